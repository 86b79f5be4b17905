"""The livenb command line: real processes talking through a hub, plus in-process error paths."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

import livenb
from livenb._cli import CsvWriter, JsonLinesWriter, flatten, main

POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LIVENB_URL", "LIVENB_TOKEN")}
    env.update(extra)
    return env


class Proc:
    """``python -m livenb ARGS`` with its stdout and stderr lines collected by reader threads,
    so every wait for output is bounded by a timeout."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "livenb", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env if env is not None else _env(),
        )
        self.lines: dict[str, queue.Queue[str | None]] = {
            "out": queue.Queue(),
            "err": queue.Queue(),
        }
        self.seen: dict[str, list[str]] = {"out": [], "err": []}
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self.readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, "out"), daemon=True),
            threading.Thread(target=self._read, args=(self.popen.stderr, "err"), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, stream: IO[str], name: str) -> None:
        for line in stream:
            self.lines[name].put(line.rstrip("\n"))
        self.lines[name].put(None)

    def wait_line(self, name: str, predicate: Callable[[str], bool], timeout: float) -> str:
        """The first new line of stream ``name`` matching ``predicate``; fails on timeout/EOF."""
        while True:
            try:
                line = self.lines[name].get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no matching line on std{name}: {self.seen}") from None
            if line is None:
                self.lines[name].put(None)
                raise AssertionError(f"std{name} ended without a matching line: {self.seen}")
            self.seen[name].append(line)
            if predicate(line):
                return line

    def finish(self, timeout: float) -> tuple[int, list[str], list[str]]:
        """Wait for the exit; return the code and all stdout and stderr lines."""
        code = self.popen.wait(timeout=timeout)
        for reader in self.readers:
            reader.join(timeout)
        for name in ("out", "err"):
            while (line := self.lines[name].get_nowait()) is not None:
                self.seen[name].append(line)
        return code, self.seen["out"], self.seen["err"]

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes started by a test, killed at its end if still running."""
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.kill()


@pytest.fixture
def start(procs: list[Proc]) -> Callable[..., Proc]:
    def start(*args: str, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(list(args), env)
        procs.append(proc)
        return proc

    return start


def run_cli(
    args: list[str], unit: float, *, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "livenb", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env if env is not None else _env(),
        timeout=4 * unit,
        check=False,
    )


def hub_env(hub: livenb.Hub) -> dict[str, str]:
    assert hub.token is not None
    return _env(LIVENB_URL=hub.url, LIVENB_TOKEN=hub.token)


def assert_one_clean_error(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], stderr


# ------------------------------------------------------------------------------ end to end
@POSIX_ONLY
def test_processes_exchange_records_through_the_cli(
    start: Callable[..., Proc], unit: float
) -> None:
    server = start("serve", "--port", "0")
    url, token = _url_and_token(server, unit)
    hint = server.wait_line("out", lambda s: "export" in s, unit)
    assert f"LIVENB_URL={url}" in hint and f"LIVENB_TOKEN={token}" in hint
    assert url.startswith("ws://127.0.0.1:")
    env = _env(LIVENB_URL=url, LIVENB_TOKEN=token)

    sub = start("sub", "T", "--count", "3", env=env)
    sub.wait_line("err", lambda s: "subscribed to T" in s, 4 * unit)

    lines = '{"n": 1}\n\n{"n": 2, "tag": "x"}\n  \n{"n": 3}\n'
    pub = run_cli(["pub", "T", "-"], unit, stdin=lines, env=env)
    assert pub.returncode == 0, pub.stderr
    assert "Traceback" not in pub.stderr

    code, out, err = sub.finish(4 * unit)
    assert code == 0, err
    records = [json.loads(line) for line in out]
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert [r["data"] for r in records] == [{"n": 1}, {"n": 2, "tag": "x"}, {"n": 3}]
    assert {r["topic"] for r in records} == {"T"}
    assert all(isinstance(r["ts"], float) for r in records)
    assert list(records[0]) == ["topic", "seq", "ts", "data"]

    server.popen.send_signal(signal.SIGINT)
    code, _, err = server.finish(4 * unit)
    assert code == 0, err
    assert "Traceback" not in "\n".join(err)
    assert any("stopped on SIGINT" in line for line in err)


@POSIX_ONLY
def test_serve_stops_cleanly_on_sigterm_and_warns_without_auth(
    start: Callable[..., Proc], unit: float
) -> None:
    server = start("serve", "--port", "0", "--no-auth")
    server.wait_line("out", lambda s: s.startswith("livenb hub: ws://"), 4 * unit)
    assert server.wait_line("out", lambda s: s.startswith("token: "), unit).startswith(
        "token: none"
    )
    server.wait_line("err", lambda s: "WARNING: authentication is OFF" in s, unit)
    server.popen.send_signal(signal.SIGTERM)
    code, _, err = server.finish(4 * unit)
    assert code == 0, err
    assert any("stopped on SIGTERM" in line for line in err)


@POSIX_ONLY
def test_sub_exits_quietly_on_ctrl_c(
    start: Callable[..., Proc], hub: livenb.Hub, unit: float
) -> None:
    sub = start("sub", "T.>", env=hub_env(hub))
    sub.wait_line("err", lambda s: "subscribed to T.>" in s, 4 * unit)
    sub.popen.send_signal(signal.SIGINT)
    code, out, err = sub.finish(4 * unit)
    assert code == 0
    assert out == []
    assert "Traceback" not in "\n".join(err)


def test_sub_reports_when_the_hub_goes_away(
    start: Callable[..., Proc], hub: livenb.Hub, unit: float
) -> None:
    sub = start("sub", "T", "--no-reconnect", env=hub_env(hub))
    sub.wait_line("err", lambda s: "subscribed to T" in s, 4 * unit)
    hub.close()
    code, _, err = sub.finish(4 * unit)
    assert code == 1
    assert_one_clean_error("\n".join(err[1:]), "livenb sub: error:", "closed")


def test_sub_csv_output(start: Callable[..., Proc], hub: livenb.Hub, unit: float) -> None:
    sub = start("sub", "T.*", "--format", "csv", "--count", "3", env=hub_env(hub))
    sub.wait_line("err", lambda s: "subscribed to T.*" in s, 4 * unit)
    with hub.connect() as client:
        # Acks keep the order across topics (batches are per topic).
        client.publish("T.a", {"px": 1.5, "note": "hello, world", "n": {"x": True}}, ack=True)
        client.publish("T.b", {"px": 2.5, "later": "ignored"}, ack=True)
        client.publish("T.a", {"px": 3.5, "n": {"x": None}}, ack=True)
    code, out, err = sub.finish(4 * unit)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO("\n".join(out) + "\n")))
    assert list(rows[0]) == ["topic", "seq", "ts", "px", "note", "n.x"]
    assert [(r["topic"], r["seq"], r["px"]) for r in rows] == [
        ("T.a", "1", "1.5"),
        ("T.b", "1", "2.5"),
        ("T.a", "2", "3.5"),
    ]
    assert rows[0]["note"] == "hello, world"
    assert [r["n.x"] for r in rows] == ["true", "", ""]
    assert all(float(r["ts"]) > 0 for r in rows)


# ------------------------------------------------------------------------------ errors
def test_pub_with_a_bad_token_fails_cleanly(hub: livenb.Hub, unit: float) -> None:
    env = _env(LIVENB_URL=hub.url, LIVENB_TOKEN="not-the-token")
    result = run_cli(["pub", "T", '{"x": 1}'], unit, env=env)
    assert result.returncode == 1
    assert_one_clean_error(result.stderr, "livenb pub: error:", "rejected the access token")


def test_pub_without_a_token_says_so(hub: livenb.Hub, unit: float) -> None:
    result = run_cli(["pub", "T", '{"x": 1}', "--url", hub.url], unit)
    assert result.returncode == 1
    assert_one_clean_error(result.stderr, "LIVENB_TOKEN")


def test_pub_malformed_json_line_exits_2_after_publishing_the_lines_before(
    hub: livenb.Hub, unit: float
) -> None:
    with hub.connect() as client:
        sub = client.subscribe("T")
        lines = '{"n": 1}\n\n{"n": 2\n{"n": 3}\n'
        result = run_cli(["pub", "T", "-"], unit, stdin=lines, env=hub_env(hub))
        assert result.returncode == 2
        assert_one_clean_error(result.stderr, "livenb pub: error:", "line 3", "invalid JSON")
        # pub confirmed line 1 with the hub before exiting; a marker published now follows it.
        client.publish("T", {"n": "marker"})
        received = list(itertools.islice(sub.records(timeout=4 * unit), 2))
        assert [(r.seq, r.data) for r in received] == [(1, {"n": 1}), (2, {"n": "marker"})]


def test_pub_publishes_stdin_lines_as_they_arrive(hub: livenb.Hub, unit: float) -> None:
    with hub.connect() as client:
        sub = client.subscribe("T")
        pub = subprocess.Popen(
            [sys.executable, "-m", "livenb", "pub", "T", "-"],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=hub_env(hub),
        )
        try:
            assert pub.stdin is not None
            pub.stdin.write(b'{"n": 1}\n')
            pub.stdin.flush()
            sub.wait(1, timeout=4 * unit)  # arrives while stdin is still open
            _, err = pub.communicate(b'{"n": 2}', timeout=4 * unit)  # no final newline
            assert pub.returncode == 0, err
        finally:
            if pub.poll() is None:
                pub.kill()
                pub.communicate()
        sub.wait(2, timeout=4 * unit)
        assert list(sub.frame["n"]) == [1, 2]


def test_pub_malformed_json_argument_exits_2(
    hub: livenb.Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pub", "T", "{oops", "--url", hub.url, f"--token={hub.token}"]) == 2
    assert_one_clean_error(capsys.readouterr().err, "invalid JSON")


@pytest.mark.parametrize("command", [["pub", "a..b", "{}"], ["pub", "T.*", "{}"], ["sub", "a.>.b"]])
def test_invalid_topics_exit_2(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "error: argument" in err
    assert "topic" in err


def test_unreachable_hub_exits_1(unit: float, capsys: pytest.CaptureFixture[str]) -> None:
    with livenb.serve(port=0) as gone:
        url = gone.url
    for command in (["pub", "T", "{}"], ["sub", "T"]):
        assert main([*command, "--url", url, "--token", "x", "--timeout", str(unit)]) == 1
        assert_one_clean_error(capsys.readouterr().err, "cannot reach a livenb hub", url)


def test_bad_url_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pub", "T", "{}", "--url", "http://example.invalid"]) == 2
    assert_one_clean_error(capsys.readouterr().err, "ws://")


def test_serve_on_a_used_port_exits_1(hub: livenb.Hub, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", str(hub.port)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_clean_error(captured.err, "livenb serve: error:", "cannot listen")


def test_serve_rejects_token_with_no_auth(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "0", "--token", "t", "--no-auth"]) == 2
    assert "not allowed with" in capsys.readouterr().err


# ------------------------------------------------------------------------------ in-process
def test_pub_ack_prints_the_last_seq(
    hub: livenb.Hub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIVENB_URL", hub.url)
    monkeypatch.setenv("LIVENB_TOKEN", str(hub.token))
    assert main(["pub", "T", '{"x": 1}', "--ack"]) == 0
    assert capsys.readouterr().out == "1\n"
    stdin = io.TextIOWrapper(io.BytesIO(b'{"x": 2}\n[1, 2]\n"text"\n'))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["pub", "T", "-", "--ack"]) == 0
    assert capsys.readouterr().out == "4\n"
    assert main(["pub", "T", "5"]) == 0  # non-dict records are fine; no --ack, no output
    assert capsys.readouterr().out == ""


def test_json_lines_writer_shape() -> None:
    out = io.StringIO()
    JsonLinesWriter(out).write(livenb.Record("a.b", 7, 1.5, {"x": [1, None]}))
    assert json.loads(out.getvalue()) == {
        "topic": "a.b",
        "seq": 7,
        "ts": 1.5,
        "data": {"x": [1, None]},
    }
    assert out.getvalue().endswith("}\n")


def test_csv_writer_flattens_and_fixes_the_header() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": False}) == {
        "a.b": 1,
        "a.c.d": "[1,2]",
        "e": "false",
    }
    assert flatten(3.5) == {"value": 3.5}
    out = io.StringIO()
    writer = CsvWriter(out)
    writer.write(livenb.Record("t", 1, 2.0, {"seq": "mine", "v": 1}))
    writer.write(livenb.Record("t", 2, 3.0, {"v": 2, "new": 0}))
    assert out.getvalue().splitlines() == [
        "topic,seq,ts,data.seq,v",
        "t,1,2.0,mine,1",
        "t,2,3.0,,2",
    ]


# ------------------------------------------------------------------------------ demo, help
def test_demo_runs_headless_and_exits_0(unit: float) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "livenb", "demo", "--seconds", "2", "--rate", "2000", "--seed", "1"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=6 * unit,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout
    throughput = [line for line in out.splitlines() if "rec/s" in line and "received" in line]
    assert len(throughput) >= 1
    assert "ACME" in out and "px" in out
    summary = out.splitlines()[-1]
    assert summary.startswith("done:"), out
    assert "hub drops: 0" in summary


def test_help(unit: float, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(["--help"], unit)
    assert result.returncode == 0
    for word in ("serve", "pub", "sub", "demo", "LIVENB_URL", "examples"):
        assert word in result.stdout
    for command in ("serve", "pub", "sub", "demo"):
        assert main([command, "--help"]) == 0
        assert "examples:" in capsys.readouterr().out
    assert main([]) == 2  # a command is required
    assert "required" in capsys.readouterr().err


def test_console_script(unit: float) -> None:
    script = Path(sys.executable).with_name("livenb.exe" if sys.platform == "win32" else "livenb")
    if not script.exists():
        pytest.skip(f"the livenb console script is not installed next to {sys.executable}")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=4 * unit, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"livenb {livenb.__version__}"


def test_importing_the_cli_does_not_import_pandas(unit: float) -> None:
    code = "import sys, livenb._cli; sys.exit('pandas' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], timeout=4 * unit, check=False)
    assert result.returncode == 0, "importing livenb._cli imported pandas"


def _url_and_token(server: Proc, unit: float) -> tuple[str, str]:
    url = server.wait_line("out", lambda s: s.startswith("livenb hub: "), 4 * unit).split()[-1]
    token = server.wait_line("out", lambda s: s.startswith("token: "), unit).split()[-1]
    return url, token


def test_serve_with_journal_keeps_the_epoch(
    start: Callable[..., Proc], tmp_path: Path, unit: float
) -> None:
    journal = tmp_path / "hub.journal"
    epochs = []
    for _ in range(2):
        server = start("serve", "--port", "0", "--journal", str(journal))
        url, token = _url_and_token(server, unit)
        with livenb.connect(url, token=token) as c:
            assert c.publish("j", {"x": 1}, ack=True, timeout=2 * unit) == len(epochs) + 1
            sub = c.subscribe("j", timeout=2 * unit)
            epochs.append(sub.aio.epoch)
        server.popen.send_signal(signal.SIGINT)
        assert server.finish(4 * unit)[0] == 0
    assert epochs[0] == epochs[1]


def test_serve_refuses_a_network_bind_without_insecure(unit: float) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "livenb", "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=4 * unit,
        check=False,
    )
    assert result.returncode == 1
    assert_one_clean_error(result.stderr, "livenb serve: error:", "insecure=True")


def test_serve_tls_and_clients_with_cafile(start: Callable[..., Proc], unit: float) -> None:
    server = start("serve", "--port", "0", "--tls")
    url, token = _url_and_token(server, unit)
    exports = server.wait_line("out", lambda s: "export" in s, unit)
    cafile = server.wait_line("out", lambda s: s.startswith("certificate"), unit).split()[-1]
    assert url.startswith("wss://") and "LIVENB_CAFILE=" in exports
    env = _env(LIVENB_URL=url, LIVENB_TOKEN=token, LIVENB_CAFILE=cafile)
    result = run_cli(["pub", "T", '{"x": 1}', "--ack"], unit, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
    server.popen.send_signal(signal.SIGINT)
    assert server.finish(4 * unit)[0] == 0


@POSIX_ONLY
def test_serve_prints_its_token_once_and_never_logs_it(
    start: Callable[..., Proc], unit: float
) -> None:
    import asyncio

    import orjson
    from websockets.asyncio.client import connect

    server = start("serve", "--port", "0", "-vv")
    url, token = _url_and_token(server, unit)
    with livenb.connect(url, token=token) as c:  # the header path
        assert c.publish("t", {"x": 1}, ack=True, timeout=2 * unit) == 1

    async def browser_like() -> None:  # the first-message path
        async with connect(url) as ws:
            await ws.send(orjson.dumps({"op": "auth", "token": token}).decode())
            await ws.send('{"op":"ping"}')
            await asyncio.wait_for(ws.recv(), unit)

    asyncio.run(browser_like())
    server.wait_line("err", lambda s: "Authorization: ***" in s, 2 * unit)
    server.wait_line("err", lambda s: "< TEXT '***'" in s, 2 * unit)  # the auth frame
    server.popen.send_signal(signal.SIGINT)
    code, out, err = server.finish(4 * unit)
    assert code == 0
    assert sum(line.startswith("token: ") for line in out) == 1
    assert not [line for line in err if token in line]


@POSIX_ONLY
def test_serve_limit_flags_reach_the_hub(start: Callable[..., Proc], unit: float) -> None:
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    server = start(
        "serve", "--port", "0", "--max-connections", "1", "--max-size", "1000", "--compression"
    )
    url, token = _url_and_token(server, unit)
    headers = {"Authorization": f"Bearer {token}"}

    async def check() -> None:
        async with connect(url, additional_headers=headers, compression="deflate") as ws:
            assert [e.name for e in ws.protocol.extensions] == ["permessage-deflate"]
            with pytest.raises(InvalidStatus) as full:
                async with connect(url, additional_headers=headers):
                    pass
            assert full.value.response.status_code == 503
            await ws.send('{"op":"pub","topic":"t","data":"' + "x" * 2000 + '"}')
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), unit)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

    asyncio.run(check())
