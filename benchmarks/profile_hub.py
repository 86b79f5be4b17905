"""Profile the hub (or a client) under one of the suite's loads with py-spy.

``python -m benchmarks.profile_hub [--load relay-single|relay-batched|fanout-100]
[--role hub|publisher|subscriber] [-n 100000] [--out profile.svg] [--raw]``

A hub runs in its own process pinned to core 0, a subscriber process and a publisher process
(livenb's blocking client, as in the suite) on core 1; py-spy samples the chosen role's
process from just before the first publish to the last record received, then writes a
flamegraph SVG (``--raw``: py-spy's collapsed stacks, which the summary below reads). The
top functions by own time and by time including callees are printed. py-spy is not a
dependency of livenb: ``.venv/bin/pip install -e .[profile]`` (or ``pip install py-spy``).
Traffic stays on 127.0.0.1; every process is stopped when the load ends.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

HUB = """
import json, threading, livenb
hub = livenb.serve(port=0, max_connections=5_000)
print(json.dumps([hub.url, hub.token]), flush=True)
threading.Event().wait()
"""

SUBSCRIBER = """
import json, sys, livenb
url, token, n, subs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
clients = [livenb.connect(url, token=token) for _ in range(subs)]
handles = [c.subscribe("profile", window=None, buffer=1) for c in clients]
print("ready", flush=True)
for h in handles:
    h.wait(n, timeout=600)
print("done", flush=True)
"""

PUBLISHER = """
import json, sys, livenb
url, token, n, per_frame = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
options = {"batch_records": 1, "batch_delay": 0.0} if per_frame == 1 else {}
tick = {"sym": "ACME", "px": 101.25, "qty": 100, "bid": 101.2, "ask": 101.3, "venue": "XNAS"}
records = [dict(tick, i=i) for i in range(n)]
with livenb.connect(url, token=token, **options) as client:
    input()  # go
    for record in records:
        client.publish("profile", record)
    client.flush(timeout=600)
"""

LOADS = {  # load -> (records per frame, subscriber connections)
    "relay-single": (1, 1),
    "relay-batched": (100, 1),
    "fanout-100": (100, 100),
}


def _pinned(core: int) -> Any:
    def pin() -> None:
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {core})

    return pin


def _python(code: str, *args: str, core: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_pinned(core),  # no threads here: safe to fork
    )


def summary(raw: Path, top: int = 20) -> str:
    """The top functions of py-spy's collapsed stacks, by own time and including callees."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        samples = int(count)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return "no samples"
    lines = [f"{total} samples", "own time:"]
    lines += [f"  {v / total:6.1%}  {k}" for k, v in own.most_common(top)]
    lines.append("including callees:")
    lines += [f"  {v / total:6.1%}  {k}" for k, v in inclusive.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_hub", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--load", choices=sorted(LOADS), default="relay-single")
    parser.add_argument("--role", choices=("hub", "publisher", "subscriber"), default="hub")
    parser.add_argument("-n", type=int, default=100_000, help="records published")
    parser.add_argument("--out", type=Path, default=Path("profile.svg"))
    parser.add_argument("--raw", action="store_true", help="collapsed stacks instead of an SVG")
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        parser.error("py-spy is not installed: .venv/bin/pip install -e .[profile]")
    per_frame, subs = LOADS[args.load]
    hub = _python(HUB, core=0)
    procs = [hub]
    sampler = None
    try:
        assert hub.stdout is not None
        url, token = json.loads(hub.stdout.readline())
        n = str(args.n)
        sub = _python(SUBSCRIBER, url, token, n, str(subs), core=1)
        procs.append(sub)
        assert sub.stdout is not None and sub.stdout.readline().strip() == "ready"
        pub = _python(PUBLISHER, url, token, n, str(per_frame), core=1)
        procs.append(pub)
        target = {"hub": hub, "publisher": pub, "subscriber": sub}[args.role]
        raw = args.out if args.raw else args.out.with_suffix(".txt")
        command = [
            spy,
            "record",
            "--rate",
            str(args.rate),
            "--pid",
            str(target.pid),
            "--nonblocking",
        ]
        sampler = subprocess.Popen(
            [*command, "--format", "raw", "--output", str(raw)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # py-spy attaches
        started = time.monotonic()
        assert pub.stdin is not None
        pub.stdin.write("go\n")
        pub.stdin.flush()
        assert sub.stdout.readline().strip() == "done"
        seconds = time.monotonic() - started
        sampler.send_signal(signal.SIGINT)  # py-spy writes its output and exits
        sampler.wait(60)
        print(
            f"{args.load}: {args.n:,} records in {seconds:.2f} s ({args.n / seconds:,.0f} rec/s), {args.role} sampled"
        )
        print(summary(raw))
        if not args.raw:
            _svg(raw, args.out)
            raw.unlink()
            print(f"written: {args.out}")
        else:
            print(f"written: {raw}")
    finally:
        if sampler is not None and sampler.poll() is None:
            sampler.kill()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
    return 0


def _svg(raw: Path, out: Path) -> None:
    """A flamegraph SVG of collapsed stacks: one bar per frame, width by samples (no
    external flamegraph tool needed)."""
    tree: dict[str, Any] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        node = tree
        for frame in stack.split(";"):
            entry = node.setdefault(frame, [0, {}])
            entry[0] += int(count)
            node = entry[1]
    total = sum(entry[0] for entry in tree.values()) or 1
    width, row = 1600, 16
    bars: list[str] = []
    depth_max = 0

    def draw(node: dict[str, Any], x: float, depth: int) -> None:
        nonlocal depth_max
        depth_max = max(depth_max, depth)
        for name, (samples, children) in sorted(node.items()):
            w = width * samples / total
            if w >= 0.5:
                label = name if w > 7 * len(name) else name[: int(w / 7)]
                title = f"{name} ({samples} samples, {samples / total:.1%})"
                title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                label = label.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                hue = 20 + (hash(name.split(" ")[0]) % 40)
                bars.append(
                    f'<g><title>{title}</title><rect x="{x:.1f}" y="{{y{depth}}}" width="{w:.1f}" '
                    f'height="{row - 1}" fill="hsl({hue},80%,60%)"/><text x="{x + 2:.1f}" '
                    f'y="{{t{depth}}}" font-size="11" font-family="monospace">{label}</text></g>'
                )
                draw(children, x, depth + 1)
            x += w

    draw(tree, 0.0, 0)
    height = (depth_max + 1) * row
    body = "\n".join(bars)
    for depth in range(depth_max + 1):  # root at the bottom, like a flame
        y = height - (depth + 1) * row
        body = body.replace(f"{{y{depth}}}", str(y)).replace(f"{{t{depth}}}", str(y + row - 4))
    out.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">\n{body}\n</svg>\n'
    )


if __name__ == "__main__":
    raise SystemExit(main())
