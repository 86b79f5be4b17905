"""The ``livenb`` command line (also ``python -m livenb``): serve, pub, sub, record, replay
and demo.

Exit codes: 0 success (also when ``serve``, ``sub``, ``record`` or ``demo`` are stopped with
Ctrl-C or SIGTERM), 1 runtime errors (hub unreachable, wrong token, connection lost, the hub
refused a record, an unreadable recording), 2 usage and input errors (bad options, invalid
topic, malformed JSON), 130 when ``pub`` or ``replay`` is interrupted. Expected errors print one line to stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import IO, Any, Final, Protocol

import orjson
from websockets.exceptions import ConnectionClosed

from ._client import Record
from ._errors import (
    AuthenticationError,
    HubUnreachableError,
    InvalidTopicError,
    LivenbError,
    LivenbTimeoutError,
)
from ._origins import is_loopback
from ._sync import Client, Subscription, connect, serve
from ._topics import check_pattern, check_topic

PROG: Final = "livenb"
DEFAULT_URL: Final = "ws://127.0.0.1:8765"
DEFAULT_TIMEOUT: Final = 10.0

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


class CliError(Exception):
    """An expected failure: ``message`` goes to stderr on one line, ``code`` is the exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# ---------------------------------------------------------------------------------- helpers
def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _say(prog: str, message: str) -> None:
    """A status or error line on stderr (stdout carries data only)."""
    print(f"{prog}: {_one_line(message)}", file=sys.stderr, flush=True)


def _parse_json(text: str | bytes, where: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{where}: invalid JSON ({exc})", EXIT_USAGE) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535 (got {value})")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0 (got {text})")
    return value


def _topic(text: str) -> str:
    try:
        return check_topic(text)
    except InvalidTopicError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _pattern(text: str) -> str:
    try:
        return check_pattern(text)
    except InvalidTopicError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _connect(args: argparse.Namespace) -> Client:
    """Connect with ``--url``/``--token`` or ``$LIVENB_URL``/``$LIVENB_TOKEN``."""
    url: str = args.url or os.environ.get("LIVENB_URL") or DEFAULT_URL
    token: str | None = args.token or os.environ.get("LIVENB_TOKEN") or None
    timeout: float = args.timeout
    reconnect = not getattr(args, "no_reconnect", False)
    cafile: str | None = args.cafile or os.environ.get("LIVENB_CAFILE") or None
    tls: dict[str, Any] = {"cafile": cafile} if cafile and url.startswith("wss://") else {}
    try:
        return connect(
            url, token, timeout=timeout, open_timeout=timeout, reconnect=reconnect, **tls
        )
    except ValueError as exc:  # a malformed URL
        raise CliError(f"{exc} (set --url or LIVENB_URL)", EXIT_USAGE) from None
    except AuthenticationError:
        raise CliError(
            f"the hub at {url} rejected the access token; pass the token `livenb serve` "
            "printed with --token or LIVENB_TOKEN"
        ) from None
    except HubUnreachableError as exc:
        raise CliError(f"{exc} (the URL comes from --url or LIVENB_URL)") from None
    except LivenbTimeoutError:
        raise CliError(
            f"no answer from a hub at {url} within {timeout} s; is it running? (--timeout)"
        ) from None


def _no_token_hint(args: argparse.Namespace) -> str:
    """Without a token, a hub that requires one accepts the connection but closes it (4401)
    at the first message: say so next to whatever error that caused."""
    if args.token or os.environ.get("LIVENB_TOKEN"):
        return ""
    return " (no access token was given: pass --token or set LIVENB_TOKEN if the hub needs one)"


def _close_quietly(closable: Client | Subscription | None, timeout: float) -> None:
    if closable is None:
        return
    with contextlib.suppress(LivenbError):
        closable.close(timeout=timeout)


# ---------------------------------------------------------------------------------- serve
def cmd_serve(args: argparse.Namespace) -> int:
    """Run a hub until SIGINT/SIGTERM; print its URL and token on stdout first."""
    prog = f"{PROG} serve"
    if args.no_auth and args.token is not None:
        raise CliError("give --token or --no-auth, not both", EXIT_USAGE)
    if args.token is not None and not args.token.strip():
        raise CliError("--token must not be empty", EXIT_USAGE)

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    # Installed before the hub starts, so a signal at any moment ends in a clean close.
    previous = _install_signal_handlers(on_signal)
    try:
        options: dict[str, Any] = {"auth": False} if args.no_auth else {"token": args.token}
        options["slow_consumer"] = args.slow_consumer
        options["origins"] = args.origin
        options["insecure"] = args.insecure
        options["tls"] = args.tls
        options["compression"] = args.compression
        for name in ("max_connections", "max_size", "rate_limit"):
            if getattr(args, name) is not None:
                options[name] = getattr(args, name)
        if args.keyfile and not args.certfile:
            raise CliError("--keyfile needs --certfile", EXIT_USAGE)
        if args.certfile:
            options["certfile"] = args.certfile
            options["keyfile"] = args.keyfile
        if args.journal:
            options["journal"] = args.journal
        if args.engine:
            if args.journal:
                raise CliError("give --journal or --engine, not both", EXIT_USAGE)
            options["engine"] = args.engine
        hub = serve(args.host, args.port, **options)
        try:
            print(f"livenb hub: {hub.url}", flush=True)
            exports = f"LIVENB_URL={hub.url}"
            if hub.token is None:
                print("token: none (authentication is OFF)", flush=True)
            else:
                print(f"token: {hub.token}", flush=True)
                exports += f" LIVENB_TOKEN={shlex.quote(hub.token)}"
            if hub.cafile is not None:
                exports += f" LIVENB_CAFILE={shlex.quote(str(hub.cafile))}"
            print(f"connect with: export {exports}", flush=True)
            if hub.cafile is not None:
                print(f"certificate (self-signed; clients trust it): {hub.cafile}", flush=True)
            if args.no_auth:
                _say(
                    prog,
                    "WARNING: authentication is OFF: anyone who can reach "
                    f"{hub.url} can read and publish every topic. Use it only on a trusted "
                    "machine; drop --no-auth to require a token.",
                )
            if not is_loopback(args.host) and not hub.aio.tls:
                _say(
                    prog,
                    f"WARNING: listening on {args.host}, reachable from other machines. The hub "
                    "does not do TLS: put a TLS-terminating proxy (wss://) in front of it, or "
                    "the token and every record cross the network in clear text.",
                )
            _say(prog, "serving; stop with Ctrl-C (SIGINT) or SIGTERM")
            interval: float | None = args.stats
            while not stop.wait(interval):
                _say(prog, _format_stats(hub.stats()))
        finally:
            # A second Ctrl-C while closing interrupts instead of waiting for the close.
            _restore_signal_handlers(previous)
            stats = hub.stats()
            hub.close(timeout=args.timeout)
    finally:
        _restore_signal_handlers(previous)
    name = signal.Signals(received[0]).name if received else "stop"
    _say(prog, f"stopped on {name}; {_format_stats(stats)}")
    return EXIT_OK


def _format_stats(stats: dict[str, Any]) -> str:
    return (
        f"connections={stats['connections']} topics={stats['topics']} "
        f"records_in={stats['records_in']} records_out={stats['records_out']} "
        f"drops={stats['drops']}"
    )


_SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def _install_signal_handlers(
    handler: Callable[[int, FrameType | None], None],
) -> dict[int, _SignalHandler]:
    previous: dict[int, _SignalHandler] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous  # only the main thread may set handlers; Ctrl-C still interrupts
    for name in ("SIGINT", "SIGTERM"):
        signum = getattr(signal, name, None)
        if signum is not None:
            previous[signum] = signal.signal(signum, handler)
    return previous


def _restore_signal_handlers(previous: dict[int, _SignalHandler]) -> None:
    while previous:
        signum, handler = previous.popitem()
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


# ---------------------------------------------------------------------------------- pub
def cmd_pub(args: argparse.Namespace) -> int:
    """Publish one JSON record, or JSON lines from stdin; flush and confirm before exiting."""
    prog = f"{PROG} pub"
    topic: str = args.topic
    ack: bool = args.ack
    timeout: float = args.timeout
    from_stdin = args.record == "-"
    single = None if from_stdin else _parse_json(args.record, "the record")
    hint = _no_token_hint(args)
    client = _connect(args)
    last_seq: int | None = None
    published = 0
    failure: CliError | None = None
    try:
        if not from_stdin:
            last_seq = client.publish(topic, single, ack=ack, timeout=timeout)
            published = 1
        else:
            if sys.stdin.isatty() and not args.quiet:
                _say(prog, f"reading JSON lines for {topic!r} from stdin; end with Ctrl-D")
            try:
                lineno = 0
                for lines in _stdin_lines():
                    records = []
                    for line in lines:
                        lineno += 1
                        if not line.strip():
                            continue
                        try:
                            records.append(_parse_json(line, f"stdin line {lineno}"))
                        except CliError as exc:
                            failure = exc  # publish (and confirm) the good lines before it
                            break
                    # One call per chunk of available lines: with --ack, one round trip each.
                    seq = client.publish_many(topic, records, ack=ack, timeout=timeout)
                    if seq is not None:
                        last_seq = seq
                    published += len(records)
                    if failure is not None:
                        break
            except KeyboardInterrupt:
                failure = CliError(
                    f"interrupted; the {published} record(s) read before were published",
                    EXIT_INTERRUPTED,
                )
        _confirm(client, timeout)
    except (LivenbError, ConnectionClosed) as exc:
        done = f" ({published} record(s) read; the hub may lack some)" if from_stdin else ""
        raise CliError(f"{exc}{done}{hint}") from None
    finally:
        _close_quietly(client, timeout)
    if failure is not None:
        raise failure
    if ack and last_seq is not None:
        print(last_seq, flush=True)
    if from_stdin and sys.stdin.isatty() and not args.quiet:
        _say(prog, f"published {published} record(s) to {topic!r}")
    return EXIT_OK


_MAX_LINE: Final = 64 << 20


def _stdin_lines() -> Iterator[list[bytes]]:
    """Lines of stdin, grouped as they become available (so a pipe that pauses has its
    lines published at once), each without its newline. Raises CliError for a line over
    64 MiB (no record that large can be published)."""
    stream = sys.stdin.buffer
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # e.g. replaced by an in-memory stream
        for line in stream:
            yield [line]
        return
    pending = b""
    while True:
        data = os.read(fd, 1 << 16)
        if not data:
            if pending:
                yield [pending]
            return
        *lines, pending = (pending + data).split(b"\n")
        if lines:
            yield lines
        if len(pending) > _MAX_LINE:
            raise CliError("a stdin line is over 64 MiB; is the input JSON lines?", EXIT_USAGE)


def _confirm(client: Client, timeout: float) -> None:
    """Make sure the hub took every record: flush, then a ping round trip (the hub handles
    frames in order, so any error about our records arrives before the pong). Raises
    LivenbError when the connection failed, CliError when the hub refused records."""
    client.flush(timeout=timeout)
    client.ping(timeout=timeout)
    if client.aio.errors:
        err = client.aio.errors[0]
        raise CliError(f"the hub refused records ({err.code}): {err.message}")


# ---------------------------------------------------------------------------------- sub
class RecordWriter(Protocol):
    def write(self, record: Record) -> None: ...


class JsonLinesWriter:
    """One JSON object per line: ``{"topic":..,"seq":..,"ts":..,"data":..}``."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, record: Record) -> None:
        line = orjson.dumps(
            {"topic": record.topic, "seq": record.seq, "ts": record.ts, "data": record.data}
        )
        self.out.write(line.decode() + "\n")
        self.out.flush()


_META: Final = ("topic", "seq", "ts")


def flatten(data: Any) -> dict[str, Any]:
    """A record's fields as CSV cells: nested dicts flattened with dots (like ``sub.frame``), a
    non-dict record as ``value``; lists as JSON text, booleans as true/false, null as empty."""
    flat: dict[str, Any] = {}
    if isinstance(data, dict):
        _flatten_into(flat, "", data)
    else:
        flat["value"] = _cell(data)
    return flat


def _flatten_into(flat: dict[str, Any], prefix: str, data: dict[Any, Any]) -> None:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            _flatten_into(flat, f"{name}.", value)
        else:
            flat[name] = _cell(value)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return value


class CsvWriter:
    """CSV with a header: ``topic,seq,ts`` then the first record's flattened fields.

    The columns are fixed by the first record: fields that appear only later are left out,
    missing fields are empty. A field named like a metadata column is written as
    ``data.<name>``.
    """

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._writer: csv.DictWriter[str] | None = None

    def write(self, record: Record) -> None:
        row: dict[str, Any] = {"topic": record.topic, "seq": record.seq, "ts": record.ts}
        for name, value in flatten(record.data).items():
            row[f"data.{name}" if name in _META else name] = value
        if self._writer is None:
            self._writer = csv.DictWriter(
                self.out, fieldnames=list(row), extrasaction="ignore", lineterminator="\n"
            )
            self._writer.writeheader()
        self._writer.writerow(row)
        self.out.flush()


def cmd_sub(args: argparse.Namespace) -> int:
    """Print records of a topic or pattern on stdout until ``--count`` or Ctrl-C."""
    prog = f"{PROG} sub"
    pattern: str = args.pattern
    count: int | None = args.count
    timeout: float = args.timeout
    writer: RecordWriter = (
        CsvWriter(sys.stdout) if args.format == "csv" else JsonLinesWriter(sys.stdout)
    )
    client = _connect(args)
    sub: Subscription | None = None
    printed = 0
    try:
        # Records are buffered for iteration from the moment the hub confirms.
        sub = client.subscribe(pattern, window=None, buffer=args.buffer, timeout=timeout)
        if not args.quiet:
            _say(prog, f"subscribed to {pattern} at {client.url}")
        seen_drops = 0
        for record in sub.records(timeout=None):
            writer.write(record)
            printed += 1
            dropped = sub.aio.unread_dropped
            if dropped > seen_drops:
                _say(
                    prog,
                    f"WARNING: {dropped - seen_drops} record(s) dropped ({dropped} in all): "
                    "the output is slower than the stream; raise --buffer or read faster",
                )
                seen_drops = dropped
            if count is not None and printed >= count:
                break
        else:
            raise CliError("the subscription ended before --count records arrived")
    except KeyboardInterrupt:
        pass  # Ctrl-C is how an endless `sub` is meant to stop
    except BrokenPipeError:
        _silence_stdout()  # the reader went away (e.g. `| head`): like --count, not an error
    except (LivenbError, ConnectionClosed) as exc:
        done = f" (after {printed} record(s))" if printed else ""
        raise CliError(f"{exc}{done}{_no_token_hint(args)}") from None
    finally:
        _close_quietly(sub, timeout)
        _close_quietly(client, timeout)
    return EXIT_OK


# ---------------------------------------------------------------------------------- record
def cmd_record(args: argparse.Namespace) -> int:
    """Write a topic or pattern to a Parquet file until ``--count``, ``--seconds`` or Ctrl-C."""
    prog = f"{PROG} record"
    timeout: float = args.timeout
    client = _connect(args)
    sub: Subscription | None = None
    recorder = None
    try:
        # Recording starts with the subscription itself: no record can slip in between.
        sub = client.subscribe(args.pattern, window=None, buffer=1, timeout=timeout, record=args.file)
        recorder = sub.recorders[0]
        if not args.quiet:
            _say(prog, f"recording {args.pattern} at {client.url} to {args.file}; Ctrl-C stops")
        started = time.monotonic()
        while True:
            if args.count is not None and sub.received >= args.count:
                break
            if args.seconds is not None and time.monotonic() - started >= args.seconds:
                break
            if sub.aio.closed:
                raise CliError("the subscription ended")
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    except (LivenbError, ConnectionClosed) as exc:
        raise CliError(f"{exc}{_no_token_hint(args)}") from None
    finally:
        _close_quietly(sub, timeout)  # finishes the file
        _close_quietly(client, timeout)
    if recorder is not None and not args.quiet:
        stats = recorder.stats()
        _say(prog, f"wrote {stats['rows_written']} records to {args.file} "
                   f"({stats['gaps']} gaps, {stats['dropped']} dropped)")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    """Publish a recording again, paced like the original (scaled by ``--speed``)."""
    from .recording import replay

    prog = f"{PROG} replay"
    timeout: float = args.timeout
    client = _connect(args)
    try:
        published = replay(
            args.file,
            client,
            topic=args.topic,
            speed=args.speed,
            progress=not args.no_progress,
            timeout=timeout,
        )
        _confirm(client, timeout)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except LivenbError as exc:
        raise CliError(str(exc)) from None
    finally:
        _close_quietly(client, timeout)
    if not args.quiet:
        _say(prog, f"published {published} records from {args.file}")
    return EXIT_OK


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be >= 0 (0: as fast as possible)")
    return value


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; point it at devnull so that raises nothing.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


# ---------------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    """A hub, a ticker publisher thread and a subscriber in one process, for ``--seconds``."""
    from .feeds import paced, symbols_for, ticker

    prog = f"{PROG} demo"
    seconds: float = args.seconds
    rate: float = args.rate
    topic: str = args.topic
    symbols = symbols_for(args.symbols)
    out = sys.stdout
    stop = threading.Event()
    published = [0]
    errors: list[BaseException] = []

    with serve(port=0) as hub, hub.connect() as publisher, hub.connect() as reader:
        # Only the frame is read, so keep the iteration buffer minimal.
        sub = reader.subscribe(topic, window=args.window, buffer=1)

        def publish() -> None:
            try:
                feed = ticker(symbols, seed=args.seed)
                for batch in paced(feed, rate, seconds=seconds):
                    if stop.is_set():
                        break
                    publisher.publish_many(topic, batch)
                    published[0] += len(batch)
                publisher.flush()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        print(
            f"livenb demo: hub {hub.url}; publishing ~{rate:,.0f} records/s of "
            f"{len(symbols)} symbols to {topic!r} for {seconds:g} s",
            file=out,
            flush=True,
        )
        thread = threading.Thread(target=publish, name="livenb-demo-publisher", daemon=True)
        started = time.monotonic()
        thread.start()
        last_time, last_count = started, 0
        interrupted = False
        try:
            tick = 1
            while True:
                due = started + min(tick, seconds)
                if stop.wait(max(0.0, due - time.monotonic())):
                    break
                now = time.monotonic()
                count = sub.received
                speed = (count - last_count) / max(now - last_time, 1e-9)
                print(
                    f"[{now - started:5.1f}s] received {count:>10,} records  {speed:>9,.0f} rec/s",
                    file=out,
                )
                print(_latest_table(sub), file=out, flush=True)
                last_time, last_count = now, count
                if tick >= seconds:
                    break
                tick += 1
        except KeyboardInterrupt:
            interrupted = True
        stop.set()
        thread.join(timeout=args.timeout)
        if errors:
            raise CliError(f"the publisher failed: {_one_line(errors[0])}")
        if thread.is_alive():
            raise CliError(f"the publisher did not stop within {args.timeout} s")
        total = published[0]
        with contextlib.suppress(LivenbTimeoutError):
            sub.wait(total, timeout=args.timeout)
        elapsed = time.monotonic() - started
        received = sub.received
        stats = hub.stats()
        print(
            f"{'interrupted' if interrupted else 'done'}: {total:,} records published, "
            f"{received:,} received in {elapsed:.1f} s (average {received / elapsed:,.0f} rec/s); "
            f"hub drops: {stats['drops']}",
            file=out,
            flush=True,
        )
        if received < total:
            _say(prog, f"{total - received} record(s) published but not received")
            return EXIT_ERROR
    return EXIT_OK


_TABLE_ROWS: Final = 12


def _latest_table(sub: Subscription) -> str:
    """The latest px/bid/ask/qty per symbol in the window, as an aligned text table."""
    frame = sub.frame
    if frame.empty or "sym" not in frame.columns:
        return "  (no records yet)"
    latest = frame.groupby("sym", sort=True)[["px", "bid", "ask", "qty"]].last()
    lines = [f"  {'sym':<8} {'px':>10} {'bid':>10} {'ask':>10} {'qty':>5}"]
    for sym, row in latest.head(_TABLE_ROWS).iterrows():
        lines.append(
            f"  {sym!s:<8} {row['px']:>10.2f} {row['bid']:>10.2f} {row['ask']:>10.2f} "
            f"{int(row['qty']):>5}"
        )
    if len(latest) > _TABLE_ROWS:
        lines.append(f"  ... and {len(latest) - _TABLE_ROWS} more symbols")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- parser
class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


_MAIN_EPILOG: Final = """\
examples:
  livenb serve                          # prints the hub's URL, token and an export line
  export LIVENB_URL=ws://127.0.0.1:8765 LIVENB_TOKEN=...
  livenb sub 'ticks.>'                  # JSON lines on stdout; Ctrl-C to stop
  livenb pub ticks.ACME '{"px": 101.5}'
  tail -f trades.jsonl | livenb pub trades -
  livenb demo --seconds 5               # self-contained: hub + ticker feed + subscriber

Clients take the hub's URL and token from --url/--token or LIVENB_URL/LIVENB_TOKEN.
Exit codes: 0 ok, 1 runtime error (hub unreachable, wrong token, ...), 2 usage or input error.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``livenb`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="livenb: a WebSocket hub with topics, and live pandas frames of them.",
        epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"livenb {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    client = argparse.ArgumentParser(add_help=False)
    conn = client.add_argument_group("hub connection")
    conn.add_argument(
        "--url", help=f"hub URL (default: $LIVENB_URL, else {DEFAULT_URL})", default=None
    )
    conn.add_argument("--token", help="access token (default: $LIVENB_TOKEN)", default=None)
    conn.add_argument(
        "--cafile",
        default=None,
        help="CA certificate to trust for a wss:// hub (default: $LIVENB_CAFILE, else the "
        "system's CAs); for `serve --tls` it is the certificate file serve prints",
    )
    conn.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for the hub to answer (default: %(default)s)",
    )

    serve_p = commands.add_parser(
        "serve",
        help="run a hub until Ctrl-C",
        formatter_class=_Formatter,
        description=(
            "Run a livenb hub until SIGINT (Ctrl-C) or SIGTERM, then close it cleanly.\n"
            "Prints 'livenb hub: URL', 'token: TOKEN' and an export line on stdout."
        ),
        epilog=(
            "examples:\n"
            "  livenb serve                         # 127.0.0.1:8765, fresh random token\n"
            "  livenb serve --port 0                # any free port (read it from stdout)\n"
            "  livenb serve --token s3cret --stats 10\n"
            "  livenb serve --journal hub.journal   # survives restarts, acks after fsync\n"
        ),
    )
    serve_p.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    serve_p.add_argument(
        "--port", type=_port, default=8765, help="port; 0 picks a free one (default: %(default)s)"
    )
    auth = serve_p.add_mutually_exclusive_group()
    auth.add_argument("--token", default=None, help="access token (default: a random one)")
    auth.add_argument(
        "--no-auth",
        action="store_true",
        help="accept clients without a token (anyone who can connect can read and write)",
    )
    serve_p.add_argument(
        "--tls",
        action="store_true",
        help="serve wss:// with a new self-signed certificate for this host (its path is "
        "printed: clients pass it as --cafile / cafile=)",
    )
    serve_p.add_argument("--certfile", default=None, help="serve wss:// with this certificate")
    serve_p.add_argument("--keyfile", default=None, help="the private key of --certfile")
    serve_p.add_argument(
        "--origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser pages from this origin (scheme://host[:port]); repeatable; "
        "without it, browsers are refused (403)",
    )
    serve_p.add_argument(
        "--insecure",
        action="store_true",
        help="allow --host beyond loopback although the hub has no TLS (the token and the "
        "records cross the network in clear text)",
    )
    serve_p.add_argument(
        "--journal",
        default=None,
        metavar="PATH",
        help="keep history, seqs and the epoch in this SQLite file, so a restarted hub "
        "resumes where it was (publishes are acknowledged once on disk)",
    )
    serve_p.add_argument(
        "--slow-consumer",
        choices=("disconnect", "drop_oldest", "latest"),
        default="disconnect",
        help="what to do with a subscriber whose queue is full (default: %(default)s)",
    )
    serve_p.add_argument(
        "--engine",
        default=None,
        metavar="URL",
        help="share topics with other hubs through Redis (redis://host:6379/0); see "
        "docs/deploy.md",
    )
    limits = serve_p.add_argument_group("limits (see docs/security.md)")
    limits.add_argument(
        "--max-connections",
        type=_positive_int,
        default=None,
        help="refuse connections above this many (HTTP 503; default 1000)",
    )
    limits.add_argument(
        "--max-size",
        type=_positive_int,
        default=None,
        metavar="BYTES",
        help="close a client that sends a larger message (1009; default 1 MiB)",
    )
    limits.add_argument(
        "--rate-limit",
        type=_positive_float,
        default=None,
        metavar="RECORDS",
        help="records per second one connection may publish (default 1000000)",
    )
    limits.add_argument(
        "--compression",
        action="store_true",
        help="accept permessage-deflate (off by default; decompressed sizes stay bounded "
        "by --max-size)",
    )
    serve_p.add_argument(
        "--stats",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="print the hub's counters to stderr every SECONDS",
    )
    serve_p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log the hub's events (INFO) to stderr; -vv also every handshake and frame "
        "(DEBUG, tokens masked)",
    )
    serve_p.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for the close (default: %(default)s)",
    )
    serve_p.set_defaults(func=cmd_serve)

    pub_p = commands.add_parser(
        "pub",
        help="publish JSON records",
        parents=[client],
        formatter_class=_Formatter,
        description=(
            "Publish one JSON record, or with '-' JSON lines from stdin (blank lines skipped).\n"
            "Everything is flushed and confirmed by the hub before pub exits. On a malformed\n"
            "line, the lines before it are published, the line number is reported and the\n"
            "exit code is 2."
        ),
        epilog=(
            "examples:\n"
            '  livenb pub ticks.ACME \'{"px": 101.5, "qty": 10}\'\n'
            "  livenb pub ticks.ACME '{\"px\": 101.5}' --ack     # prints the record's seq\n"
            "  cat records.jsonl | livenb pub ticks -\n"
        ),
    )
    pub_p.add_argument("topic", type=_topic, metavar="TOPIC", help="a concrete topic (ticks.ACME)")
    pub_p.add_argument(
        "record",
        nargs="?",
        default="-",
        metavar="JSON",
        help="the record as JSON text, or '-' to read JSON lines from stdin",
    )
    pub_p.add_argument(
        "--ack",
        action="store_true",
        help="wait until the hub has taken the records, then print the last seq",
    )
    pub_p.add_argument("-q", "--quiet", action="store_true", help="no status lines on stderr")
    pub_p.set_defaults(func=cmd_pub)

    sub_p = commands.add_parser(
        "sub",
        help="print records of a topic or pattern",
        parents=[client],
        formatter_class=_Formatter,
        description=(
            'Print records as they arrive: JSON lines {"topic","seq","ts","data"} or CSV\n'
            "(header: topic,seq,ts and the first record's fields, nested ones as a.b; fields\n"
            "that appear only later are left out). Prints 'subscribed to PATTERN' on stderr\n"
            "once the hub confirmed. Ctrl-C stops it (exit 0)."
        ),
        epilog=(
            "examples:\n"
            "  livenb sub ticks.ACME\n"
            "  livenb sub 'ticks.*' --count 100 --format csv > ticks.csv\n"
            "  livenb sub '>' | jq .data\n"
        ),
    )
    sub_p.add_argument(
        "pattern", type=_pattern, metavar="PATTERN", help="topic or pattern (ticks.*, ticks.>)"
    )
    sub_p.add_argument(
        "-n", "--count", type=_positive_int, default=None, help="exit after N records"
    )
    sub_p.add_argument(
        "--no-reconnect",
        action="store_true",
        help="exit (code 1) when the connection is lost, instead of reconnecting and "
        "resuming where it left off",
    )
    sub_p.add_argument(
        "--format",
        choices=("json", "csv"),
        default="json",
        help="output format (default: %(default)s)",
    )
    sub_p.add_argument(
        "--buffer",
        type=_positive_int,
        default=10_000,
        help="records held while the output is slow; beyond that the oldest are dropped, "
        "with a warning (default: %(default)s)",
    )
    sub_p.add_argument("-q", "--quiet", action="store_true", help="no status lines on stderr")
    sub_p.set_defaults(func=cmd_sub)

    record_p = commands.add_parser(
        "record",
        help="write a topic or pattern to a Parquet file",
        parents=[client],
        formatter_class=_Formatter,
        description=(
            "Subscribe and write every record to FILE (Parquet: topic, seq, ts, data as JSON)\n"
            "until --count records, --seconds, or Ctrl-C; the file is finished on exit.\n"
            "Needs pyarrow (pip install 'livenb[record]')."
        ),
        epilog="examples:\n  livenb record ticks ticks.parquet --seconds 60\n"
        "  livenb record 'ticks.>' all.parquet --count 100000\n",
    )
    record_p.add_argument(
        "pattern", type=_pattern, metavar="PATTERN", help="topic or pattern (ticks.*, ticks.>)"
    )
    record_p.add_argument("file", metavar="FILE", help="the Parquet file to write")
    record_p.add_argument("-n", "--count", type=_positive_int, default=None, help="stop after N records")
    record_p.add_argument("--seconds", type=_positive_float, default=None, help="stop after SECONDS")
    record_p.add_argument("-q", "--quiet", action="store_true", help="no status lines on stderr")
    record_p.set_defaults(func=cmd_record)

    replay_p = commands.add_parser(
        "replay",
        help="publish a recording again, with its original pacing",
        parents=[client],
        formatter_class=_Formatter,
        description=(
            "Publish the records of FILE (made by `livenb record` or sub.record()) with the\n"
            "original time between them divided by --speed, to --topic or each record's own\n"
            "topic, with a progress bar on stderr."
        ),
        epilog="examples:\n  livenb replay ticks.parquet --speed 10\n"
        "  livenb replay ticks.parquet --topic ticks.replayed --speed 0\n",
    )
    replay_p.add_argument("file", metavar="FILE", help="a recording (Parquet)")
    replay_p.add_argument("--topic", type=_topic, default=None, help="publish everything here")
    replay_p.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="pace multiplier: 10 plays ten times faster, 0 as fast as possible "
        "(default: %(default)s)",
    )
    replay_p.add_argument("--no-progress", action="store_true", help="no progress bar")
    replay_p.add_argument("-q", "--quiet", action="store_true", help="no status lines on stderr")
    replay_p.set_defaults(func=cmd_replay)

    demo_p = commands.add_parser(
        "demo",
        help="self-contained live ticker demo",
        formatter_class=_Formatter,
        description=(
            "Start a hub on a free port, publish a synthetic stock ticker (livenb.feeds.ticker)\n"
            "from a thread, subscribe with a window, and print once a second the records\n"
            "received, the rate, and the latest prices per symbol. Exits by itself."
        ),
        epilog="examples:\n  livenb demo\n  livenb demo --seconds 3 --rate 20000 --symbols 8\n",
    )
    demo_p.add_argument(
        "--seconds",
        type=_positive_float,
        default=10.0,
        help="how long to run (default: %(default)s)",
    )
    demo_p.add_argument(
        "--rate",
        type=_positive_float,
        default=5000.0,
        help="records per second (default: %(default)s)",
    )
    demo_p.add_argument(
        "--symbols", type=_positive_int, default=5, help="number of symbols (default: %(default)s)"
    )
    demo_p.add_argument("--seed", type=int, default=None, help="random seed (repeatable prices)")
    demo_p.add_argument(
        "--topic", type=_topic, default="ticks", help="topic to publish to (default: %(default)s)"
    )
    demo_p.add_argument(
        "--window",
        type=_positive_int,
        default=10_000,
        help="rows kept in the subscriber frame (default: %(default)s)",
    )
    demo_p.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT,
        help="seconds to wind down (default: %(default)s)",
    )
    demo_p.set_defaults(func=cmd_demo)
    return parser


# ---------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``livenb`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit
    code. Expected errors print one line to stderr; only bugs raise."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    prog = f"{PROG} {args.command}"
    func: Callable[[argparse.Namespace], int] = args.func
    library_log = logging.getLogger("livenb")
    propagate, level = library_log.propagate, library_log.level
    verbose: int = getattr(args, "verbose", 0)
    handler: logging.Handler
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        # -vv: also every handshake and frame (websockets' DEBUG traffic; tokens masked)
        library_log.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    else:
        # The command reports failures itself, in one line; the library's warnings (e.g.
        # "records not confirmed") would only repeat them. -v shows the library's log.
        handler = logging.NullHandler()  # also keeps logging's last-resort handler out
        library_log.propagate = False
    library_log.addHandler(handler)
    try:
        return _run(func, args, prog)
    finally:  # main() may run inside a larger program (tests): leave logging as it was
        library_log.removeHandler(handler)
        library_log.propagate, library_log.level = propagate, level


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace, prog: str) -> int:
    try:
        return func(args)
    except CliError as exc:
        _say(prog, f"error: {exc.message}")
        return exc.code
    except InvalidTopicError as exc:
        _say(prog, f"error: {exc}")
        return EXIT_USAGE
    except LivenbError as exc:
        _say(prog, f"error: {exc}")
        return EXIT_ERROR
    except ConnectionClosed as exc:  # should arrive as a LivenbError; never a traceback here
        _say(prog, f"error: the connection to the hub closed ({exc})")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _say(prog, "interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
