"""The Redis engine: several hubs share topics through Redis Streams.

Every node stores a publish with one Lua script that numbers it and appends it to the
topic's stream, so ``seq`` (and the shared ``epoch``) mean the same on every node and a
client resumes on any of them. Each node reads back only the topics its own subscribers
want, one stream read per node for all of them (``XREAD`` over every tracked stream), and
fans out locally.

Keys (``<prefix>`` is ``livenb`` unless set):

============================ ======================================================
``<prefix>:epoch``           the shared epoch (set once, by the first node)
``<prefix>:seqs``            hash: topic -> last seq
``<prefix>:topics``          set of every topic (nodes discover new ones here)
``<prefix>:s:<topic>``       stream: one entry per published batch, ID ``<first seq>-0``,
                             fields ``n`` (records), ``ts`` (Redis time), ``b`` (JSON array)
``<prefix>:pid:<producer>``  ``<highest frame id>:<its last seq>``, expiring: a frame a
                             client resends (after its hub died) is stored once
============================ ======================================================

Streams are trimmed with ``MAXLEN ~`` to the topic's history bound (in batches).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Final

import orjson

from . import _protocol as p
from ._errors import LivenbError
from ._history import Batch
from ._state import Forward

log = logging.getLogger("livenb.redis")

DEFAULT_PREFIX: Final = "livenb"
DEFAULT_MAX_PENDING: Final = 10_000  # frames waiting for Redis; beyond: refused (counted)
DEFAULT_MAX_PENDING_BYTES: Final = 64 << 20  # ... and their bytes
PID_TTL: Final = 86_400  # seconds a producer's last frame is remembered
READ_BLOCK_MS: Final = 100  # how long one XREAD waits before the tracked set is looked at again
DISCOVER_INTERVAL: Final = 1.0  # seconds between scans of the topic set (patterns)
BATCH_STORES: Final = 100  # forwards stored per round trip
PRIME_PAGE: Final = 200  # stream entries read per round trip when a topic is primed
MAX_TRACKED: Final = 10_000  # topics one node reads at most (a sub beyond: engine_unavailable)

# One call stores a whole batch of publishes, in order, atomically (a Lua script runs
# alone): it stops at the first frame Redis refuses, so nothing after a failure is stored,
# and a frame that fails leaves no trace (the counter moves only after the XADD). Every
# frame carries a producer id and frame number (the client's, or one the node assigns), so a
# batch sent again after a lost reply is recognised frame by frame and stored once.
# ARGV: prefix, pid ttl, then per frame: topic, n, batch JSON, keep (records), pid, fid
_STORE: Final = """
local prefix, ttl = ARGV[1], ARGV[2]
local seqs, topics = prefix .. ':seqs', prefix .. ':topics'
local out = {}
local t = redis.call('TIME')
local ts = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
for i = 3, #ARGV, 6 do
  local topic, n, body, keep = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], tonumber(ARGV[i + 3])
  local pidkey, fid = prefix .. ':pid:' .. ARGV[i + 4], tonumber(ARGV[i + 5])
  local prev = redis.call('GET', pidkey)
  local hi, hiseq = nil, nil
  if prev then hi, hiseq = string.match(prev, '^(%d+):(%d+)$') end
  if hi and fid <= tonumber(hi) then
    if fid == tonumber(hi) then out[#out + 1] = {'dup', hiseq} else out[#out + 1] = {'dup', '0'} end
  else
    local last = tonumber(redis.call('HGET', seqs, topic) or '0')
    local first = last + 1
    local floor = first + n - keep
    if floor < 1 then floor = 1 end
    local ok, err = pcall(redis.call, 'XADD', prefix .. ':s:' .. topic, 'MINID', '~', floor,
                          first .. '-0', 'n', n, 'ts', ts, 'b', body)
    if not ok then
      out[#out + 1] = {'err', tostring(err.err or err)}
      return {ts, out}
    end
    redis.call('HSET', seqs, topic, last + n)
    if redis.call('SADD', topics, topic) == 1 then redis.call('PUBLISH', prefix .. ':new-topics', topic) end
    redis.call('SET', pidkey, fid .. ':' .. first, 'EX', ttl)
    out[#out + 1] = {'ok', tostring(first)}
  end
end
return {ts, out}
"""


def _redis() -> Any:
    try:
        import redis.asyncio as aioredis
    except ImportError:
        raise LivenbError("engine='redis://...' needs redis-py: pip install 'livenb[redis]'") from None
    return aioredis


class RedisEngine:
    """One node's link to Redis (see the module docstring). Callbacks run on the loop:
    ``on_batch(topic, first, ts, records)`` for every batch read back, in seq order per topic;
    ``on_stored(forward, first, count, duplicate)`` and ``on_refused(forward, code, message)``
    for publishes."""

    def __init__(
        self,
        url: str,
        *,
        on_batch: Callable[[str, int, float, list[Any]], None],
        on_stored: Callable[[Forward, int, int, bool], None],
        on_refused: Callable[[Forward, str, str], None],
        maxlen_for: Callable[[str], int],
        prefix: str = DEFAULT_PREFIX,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.on_batch = on_batch
        self.on_stored = on_stored
        self.on_refused = on_refused
        self.maxlen_for = maxlen_for
        self.max_pending = max_pending
        self._redis: Any = None
        self._reader_redis: Any = None
        self._store_sha = ""
        self._pending: deque[_Pending] = deque()
        self._pending_bytes = 0
        self.max_tracked = max_tracked
        self.max_pending_bytes = max_pending_bytes
        self._node_pid = f"node-{_new_epoch()}"  # this node's producer id (frames without one)
        self._next_fid = 0
        self._has_pending = asyncio.Event()
        self._tracked: dict[str, str] = {}  # stream key -> last ID read
        self._tracking = asyncio.Event()
        self._known: set[str] = set()  # topics this node has seen in the topic set
        self._tasks: list[asyncio.Task[None]] = []
        self.epoch = ""
        self.connected = False
        self.outages = 0
        self.reconnects = 0
        self.stored_frames = 0
        self.refused_frames = 0
        self.read_batches = 0
        self.task_restarts = 0  # engine tasks that stopped unexpectedly and were restarted
        self._restarted = float("-inf")
        self.data_lost: str | None = None  # Redis came back without this epoch's data
        self._epoch_checked = True
        self.last_error: str | None = None
        self.down_since: float | None = None
        self.wanted: Callable[[str], bool] = lambda topic: False
        self.discovered: Callable[[str], None] = lambda topic: None

    # ------------------------------------------------------------------ keys
    def stream(self, topic: str) -> str:
        return f"{self.prefix}:s:{topic}"

    def _topic_of(self, stream: str) -> str:
        return stream[len(self.prefix) + 3 :]

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> str:
        """Connect, agree on the epoch; start the writer, reader and discovery tasks."""
        aioredis = _redis()
        self._redis = aioredis.from_url(self.url, decode_responses=True)
        self._reader_redis = aioredis.from_url(self.url, decode_responses=True)
        try:
            await self._redis.set(f"{self.prefix}:epoch", _new_epoch(), nx=True)
            self.epoch = await self._redis.get(f"{self.prefix}:epoch")
            self._store_sha = await self._redis.script_load(_STORE)
            self._known = set(await self._redis.smembers(f"{self.prefix}:topics"))
        except Exception as exc:
            await self.close()
            raise LivenbError(f"cannot use the Redis engine at {self.url}: {exc}") from exc
        self.connected = True
        self._tasks = [
            asyncio.create_task(self._keep_running(self._writer), name="livenb-redis-writer"),
            asyncio.create_task(self._keep_running(self._reader), name="livenb-redis-reader"),
            asyncio.create_task(self._keep_running(self._discover), name="livenb-redis-discover"),
        ]
        return self.epoch

    async def _keep_running(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``work`` forever: if it ever stops (a bug, a surprise from redis-py), log it,
        count it and start it again, so the node never goes deaf. Its state (the IDs read,
        the queued publishes) lives on the engine, so a restart resumes where it was."""
        while True:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.task_restarts += 1
                self._restarted = time.monotonic()
                log.exception("livenb hub: the Redis engine's %s stopped; restarting it", work.__name__)
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for client in (self._redis, self._reader_redis):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    def healthy(self) -> tuple[bool, str]:
        if self.data_lost is not None:
            return False, self.data_lost
        if not self.connected:
            return False, f"Redis unreachable ({self.last_error})"
        dead = [t.get_name() for t in self._tasks if t.done()]
        if dead:
            return False, f"Redis engine task ended: {', '.join(dead)}"
        if time.monotonic() - self._restarted < 5.0:  # failing again and again is not ok
            return False, "a Redis engine task failed and was restarted in the last 5 s"
        return True, "ok"

    def stats(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "connected": self.connected,
            "down_for": None if self.down_since is None else time.monotonic() - self.down_since,
            "outages": self.outages,
            "reconnects": self.reconnects,
            "stored_frames": self.stored_frames,
            "pending_frames": len(self._pending),
            "pending_bytes": self._pending_bytes,
            "refused_frames": self.refused_frames,
            "read_batches": self.read_batches,
            "tracked_topics": len(self._tracked),
            "task_restarts": self.task_restarts,
            "last_error": self.last_error,
            "data_lost": self.data_lost,
        }

    # ------------------------------------------------------------------ failures
    def _lost(self, exc: BaseException) -> None:
        self.last_error = repr(exc)
        self._epoch_checked = False
        if self.connected:
            self.connected = False
            self.outages += 1
            self.down_since = time.monotonic()
            log.warning("livenb hub: lost Redis at %s (%r); retrying", self.url, exc)

    def _back(self) -> None:
        if not self.connected:
            self.connected = True
            self.reconnects += 1
            self.down_since = None
            log.warning("livenb hub: Redis at %s is back", self.url)

    async def _backoff(self, attempt: int) -> None:
        await asyncio.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))

    # ------------------------------------------------------------------ publishing
    def submit(self, forward: Forward) -> None:
        """Queue a publish for storing (loop thread). Beyond ``max_pending`` frames waiting
        (Redis down for long), it is refused with ``engine_unavailable`` at once."""
        if self.data_lost is not None:  # storing now would number records a second time
            self.refused_frames += 1
            self.on_refused(forward, p.ENGINE_UNAVAILABLE, self.data_lost)
            return
        size = len(forward.body)
        if len(self._pending) >= self.max_pending or self._pending_bytes + size > self.max_pending_bytes:
            self.refused_frames += 1
            self.on_refused(
                forward,
                p.ENGINE_UNAVAILABLE,
                f"the hub cannot reach its Redis engine ({self.last_error}); publish again later",
            )
            return
        # Every frame gets a producer id and number: the client's (so a frame it resends to
        # another node is stored once), or the node's own (so a batch this node resends after
        # a lost reply is stored once).
        if forward.pid is not None and type(forward.request_id) is int:
            pid, fid = forward.pid, forward.request_id
        else:
            self._next_fid += 1
            pid, fid = self._node_pid, self._next_fid
        self._pending.append((forward, pid, fid))
        self._pending_bytes += size
        self._has_pending.set()

    async def _writer(self) -> None:
        attempt = 0
        while True:
            await self._has_pending.wait()
            batch = [self._pending[i] for i in range(min(BATCH_STORES, len(self._pending)))]
            try:
                if self.outages and not self._epoch_checked:  # back after an outage
                    await self._check_epoch()
                if self.data_lost is not None:
                    self._refuse_pending()
                    continue
                results = await self._store(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # unknown outcome: resend, each frame is stored once
                self._lost(exc)
                await self._backoff(attempt)
                attempt += 1
                continue
            self._back()
            transient = False
            for (forward, _, _), (kind, value) in zip(batch, results, strict=False):
                if kind == "err" and _transient(value):  # OOM, loading, busy: retry later
                    self.last_error = value
                    transient = True
                    break
                self._pop_pending(forward)
                if kind == "err":  # this frame can never be stored: say so, go on
                    self.refused_frames += 1
                    log.error("livenb hub: Redis refused a publish to %r: %s", forward.topic, value)
                    self.on_refused(forward, p.ENGINE_UNAVAILABLE, f"Redis refused it: {value}")
                    continue
                self.stored_frames += 1
                self.on_stored(forward, int(value), len(forward.records), kind == "dup")
            if transient:
                await self._backoff(attempt)
                attempt += 1
            else:
                attempt = 0
            if not self._pending:
                self._has_pending.clear()

    def _pop_pending(self, forward: Forward) -> None:
        entry = self._pending.popleft()
        assert entry[0] is forward
        self._pending_bytes -= len(forward.body)

    async def _check_epoch(self) -> None:
        """Before storing again after an outage: is this still our Redis's data?"""
        self._note_epoch(await self._redis.get(f"{self.prefix}:epoch"))
        self._epoch_checked = True

    def _note_epoch(self, epoch: str | None) -> None:
        if epoch != self.epoch and self.data_lost is None:
            self.data_lost = (
                f"Redis lost its data (epoch {self.epoch} is gone); restart the hubs "
                "(clients are told what they missed), and run Redis with appendonly"
            )
            log.error("livenb hub: %s", self.data_lost)

    def _refuse_pending(self) -> None:
        assert self.data_lost is not None
        while self._pending:
            forward = self._pending[0][0]
            self._pop_pending(forward)
            self.refused_frames += 1
            self.on_refused(forward, p.ENGINE_UNAVAILABLE, self.data_lost)
        self._has_pending.clear()

    async def _store(self, batch: list[_Pending]) -> list[tuple[str, str]]:
        """Store ``batch`` with one script call; the outcome of each frame, in order (the
        list stops after the first frame Redis refused)."""
        args: list[Any] = [self.prefix, PID_TTL]
        for forward, pid, fid in batch:
            args += [
                forward.topic,
                len(forward.records),
                forward.body,  # encoded once, by the core
                self.maxlen_for(forward.topic),
                pid,
                fid,
            ]
        try:
            _, results = await self._redis.evalsha(self._store_sha, 0, *args)
        except Exception as exc:
            if type(exc).__name__ != "NoScriptError":  # (redis.exceptions, imported lazily)
                raise
            # Redis restarted and forgot the script, so it did not run: load it and redo.
            self._store_sha = await self._redis.script_load(_STORE)
            _, results = await self._redis.evalsha(self._store_sha, 0, *args)
        return [(str(kind), str(value)) for kind, value in results]

    # ------------------------------------------------------------------ reading
    async def prime(self, topic: str, keep: int, max_bytes: int) -> tuple[int, list[Batch]]:
        """``topic``'s last seq and its newest batches (at most ``keep`` records and about
        ``max_bytes`` bytes, read newest first in pages); from then on the reader brings
        the rest. The last seq and the first page are read in one transaction, so a record
        stored meanwhile is either in the page or read by the reader, never neither."""
        stream = self.stream(topic)
        pipe = self._redis.pipeline(transaction=True)
        pipe.xrevrange(stream, "+", "-", count=PRIME_PAGE)
        pipe.hget(f"{self.prefix}:seqs", topic)
        page, last_seq = await pipe.execute()
        last = int(last_seq or 0)
        # The reader starts after the newest entry read here (or after `last`: an empty
        # stream, or one trimmed empty, has nothing older to give).
        self._track(topic, page[0][0] if page else f"{last}-0" if last else "0-0")
        self._back()
        entries: list[tuple[str, dict[str, str]]] = []
        records = size = 0
        while page:
            for entry_id, fields in page:
                entries.append((entry_id, fields))
                records += int(fields["n"])
                size += len(fields["b"])
            if records >= keep or size >= max_bytes or len(page) < PRIME_PAGE:
                break
            oldest = page[-1][0]
            page = await self._redis.xrevrange(stream, f"({oldest}", "-", count=PRIME_PAGE)
        entries.reverse()
        return last, [_batch(topic, entry_id, fields) for entry_id, fields in entries]

    def follow(self, topic: str) -> None:
        """Read ``topic`` from its first retained record (a topic new to this node, found
        for a pattern subscription: everything in it came after the subscription)."""
        self._track(topic, "0-0")

    def tracks(self, topic: str) -> bool:
        return self.stream(topic) in self._tracked

    def room(self) -> int:
        """How many more topics this node may track."""
        return self.max_tracked - len(self._tracked)

    def sweep(self, wanted: Callable[[str], bool]) -> None:
        """Follow every known topic ``wanted`` now (after a pattern subscription: a topic
        discovered while it was being set up must not be passed over)."""
        for topic in sorted(self._known):
            if wanted(topic) and not self.tracks(topic) and self.room() > 0:
                self.follow(topic)

    def _track(self, topic: str, last_id: str) -> None:
        self._tracked.setdefault(self.stream(topic), last_id)
        self._tracking.set()

    async def _reader(self) -> None:
        attempt = 0
        while True:
            await self._tracking.wait()
            streams = dict(self._tracked)
            try:
                reply = await self._reader_redis.xread(streams, count=500, block=READ_BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # resume from the same IDs once Redis is back
                self._lost(exc)
                await self._backoff(attempt)
                attempt += 1
                continue
            attempt = 0
            self._back()
            for stream, entries in reply or ():
                topic = self._topic_of(stream)
                for entry_id, fields in entries:
                    first, ts, records = _parse(entry_id, fields)
                    self.on_batch(topic, first, ts, records)  # (the core encodes the frame)
                    # Moved on only once delivered: a failure re-reads this batch.
                    self._tracked[stream] = entry_id
                    self.read_batches += 1

    async def known_topics(self) -> set[str]:
        return set(await self._redis.smembers(f"{self.prefix}:topics"))

    async def _discover(self) -> None:
        """Topics created on other nodes, for this node's pattern subscriptions; and a check
        that Redis still holds this epoch (a Redis that lost its data would renumber)."""
        while True:
            await asyncio.sleep(DISCOVER_INTERVAL)
            try:
                topics = await self.known_topics()
                epoch = await self._redis.get(f"{self.prefix}:epoch")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._lost(exc)
                continue
            self._back()  # (a node with nothing to read or store learns it here)
            self._note_epoch(epoch)
            for topic in sorted(topics - self._known):
                self._known.add(topic)
                self.discovered(topic)


# A queued publish: the frame, its producer id and number.
_Pending = tuple[Forward, str, int]


def _transient(error: str) -> bool:
    """Redis errors that pass (out of memory, loading, a busy script): retry, do not refuse."""
    return error.startswith(("OOM", "LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN"))


def _parse(entry_id: str, fields: dict[str, str]) -> tuple[int, float, list[Any]]:
    """A stream entry's first seq, ts and records."""
    return int(entry_id.split("-", 1)[0]), float(fields["ts"]), orjson.loads(fields["b"])


def _batch(topic: str, entry_id: str, fields: dict[str, str]) -> Batch:
    """A stream entry as a history batch (with its msg frame, for replays)."""
    first, ts, records = _parse(entry_id, fields)
    return Batch(first, ts, len(records), p.encode_msg_frame(topic, first, ts, records))


def _new_epoch() -> str:
    import secrets

    return secrets.token_hex(8)
