"""The publisher's outbox: batching, which frames may be acknowledged together, and when the
flusher must be woken (a lost wake-up would leave records unsent; a needless one costs a
cross-thread call per record)."""

from __future__ import annotations

from types import FrameType

import orjson
from hypothesis import given
from hypothesis import strategies as st

from livenb._outbox import WAKE_NONE, WAKE_NOW, WAKE_TIMER, Frame, Outbox


def outbox(max_records: int = 3) -> Outbox:
    return Outbox(max_records=max_records, max_bytes=1 << 16, max_pending=1 << 20, pid="p1")


def frames(box: Outbox) -> list[dict[str, object]]:
    return [orjson.loads(frame.data) for frame in box.take()]


def test_frames_nobody_awaits_are_cumulative() -> None:
    box = outbox()
    box.add("t", [b"1", b"2", b"3", b"4"])
    sent = frames(box)
    assert [f["batch"] if "batch" in f else [f["data"]] for f in sent] == [[1, 2, 3], [4]]
    assert all(f["cumulative"] is True and f["pid"] == "p1" for f in sent)
    assert [f["id"] for f in sent] == [1, 2]


def test_an_awaited_frame_gets_its_own_ack_even_when_it_fills_the_batch() -> None:
    box = outbox(max_records=2)
    _, first_id, _ = box.add("t", [b"1"])
    _, awaited, _ = box.add("t", [b"2"], seal=True)  # fills the batch: sealed by the size rule
    _, awaited_alone, _ = box.add("u", [b"3"], seal=True)
    sent = {f["id"]: f for f in frames(box)}
    assert first_id == 0 and awaited == 1 and awaited_alone == 2
    assert "cumulative" not in sent[awaited] and "cumulative" not in sent[awaited_alone]


def test_a_running_flusher_is_not_woken() -> None:
    box = outbox(max_records=1)
    wake, _, signal = box.add("t", [b"1"])
    assert wake == WAKE_NOW and not signal  # the flusher has not gone to sleep yet
    assert not box.sleep(WAKE_TIMER)  # a frame is ready: it must not sleep
    box.take()
    assert box.sleep(WAKE_TIMER)
    wake, _, signal = box.add("t", [b"2"])
    assert wake == WAKE_NOW and signal  # asleep: woken once ...
    wake, _, signal = box.add("t", [b"3"])
    assert wake == WAKE_NOW and not signal  # ... not once per record
    box.awake()
    wake, _, signal = box.add("t", [b"4"])
    assert not signal


def test_a_lingering_flusher_wakes_only_for_a_complete_frame() -> None:
    box = outbox(max_records=2)
    assert box.sleep(WAKE_TIMER)
    wake, _, signal = box.add("t", [b"1"])
    assert wake == WAKE_TIMER and signal  # the first record starts the delay
    box.awake()
    assert box.sleep(WAKE_NOW)  # lingering until the delay ends
    wake, _, signal = box.add("u", [b"2"])
    assert wake == WAKE_NONE and not signal  # another open batch: keep lingering
    wake, _, signal = box.add("t", [b"3"])
    assert wake == WAKE_NOW and signal  # batch "t" is full: send now


def test_records_added_before_the_flusher_first_sleeps_are_not_forgotten() -> None:
    box = outbox()
    _, _, signal = box.add("t", [b"1"])  # no flusher asleep yet: nobody to wake
    assert not signal
    assert not box.sleep(WAKE_TIMER)  # so it must not sleep: the batch's delay must start
    assert box.sleep(WAKE_NOW)  # it lingers instead


@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=60),
    max_records=st.integers(1, 10),
    max_bytes=st.integers(8, 200),
    seal=st.booleans(),
    open_first=st.booleans(),
)
def test_adding_many_records_at_once_makes_the_frames_one_at_a_time_would(
    sizes: list[int], max_records: int, max_bytes: int, seal: bool, open_first: bool
) -> None:
    """publish_many's fast path (whole frames sealed at once) against the record loop."""
    records = [b"1" * size for size in sizes]

    def run(together: bool) -> tuple[list[Frame], int, int, int]:
        box = Outbox(max_records=max_records, max_bytes=max_bytes, max_pending=1 << 30, pid="p")
        if open_first:
            box.add("t", [b"0"])  # an open batch of the topic: no fast path
        if together:
            _, last_id, _ = box.add("t", records, seal=seal)
        else:
            last_id = 0
            for k, record in enumerate(records):
                # the loop, one record a call (a list of one never takes the fast path
                # unless max_records is 1, where it makes the same one-record frames)
                _, last_id, _ = box.add("t", [record], seal=seal and k == len(records) - 1)
        return box.take(), box.pending, box.records_added, last_id

    assert run(True) == run(False)


def test_an_awaited_publish_many_of_whole_frames_gets_its_own_ack_for_the_last() -> None:
    box = outbox(max_records=2)
    _, last_id, _ = box.add("t", [b"1", b"2", b"3", b"4"], seal=True)
    sent = {f["id"]: f for f in frames(box)}
    assert last_id == 2 and "cumulative" not in sent[2] and sent[1]["cumulative"] is True


class _Interrupt(Exception):
    """Stands in for KeyboardInterrupt (a notebook's interrupt button)."""


def test_an_interrupt_never_leaves_the_outbox_locked() -> None:
    """A signal handler raises between two bytecodes; one landing inside the outbox must not
    leave its lock held (it did with acquire() followed by try: every later publish, and
    the loop thread's ack handling, then blocked for good)."""
    import signal
    import threading
    import time

    box = Outbox(max_records=50, max_bytes=1 << 20, max_pending=1 << 60, pid="p1")
    main = threading.main_thread().ident
    assert main == threading.get_ident()
    stop = threading.Event()
    outbox_code = {
        method.__code__ for method in (Outbox.add_one, Outbox._add_locked, Outbox._seal, Outbox._frame)
    }

    def handler(signum: int, frame: FrameType | None) -> None:
        if frame is not None and frame.f_code in outbox_code:  # only inside the outbox
            raise _Interrupt

    def interrupter() -> None:
        while not stop.is_set():
            signal.pthread_kill(main, signal.SIGUSR1)
            time.sleep(0.0002)

    interrupts = left_held = 0
    previous = signal.signal(signal.SIGUSR1, handler)
    thread = threading.Thread(target=interrupter, daemon=True)
    try:
        thread.start()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                for _ in range(200):
                    box.add_one("t", b'{"a":1}')
                box.take()
            except _Interrupt:
                interrupts += 1
                if box.lock.locked():
                    left_held += 1
                    box.lock.release()
    finally:
        stop.set()
        thread.join()
        signal.signal(signal.SIGUSR1, previous)
    assert interrupts >= 20, interrupts  # enough of them to hit the window, were it there
    assert left_held == 0, f"{left_held} of {interrupts} interrupts left the lock held"
