"""The response store: diskcache (SQLite) on disk, a small LRU of recent entries in memory.

Reads are one indexed lookup (the memory LRU first); writes go to disk on one background thread,
in order, so a request never waits for a cache write. Entries carry their own expiry, checked
against the injected clock; diskcache is told the same TTL so it can drop them from disk.

Failure never reaches a request: a cache that cannot be opened because its file is corrupt is
moved aside and replaced by an empty one; one that cannot be opened at all leaves the daemon
running without a cache; an error at run time is logged (at most once a minute) and counts as a
miss. A corrupt database found at run time is moved aside and replaced as well.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import diskcache  # type: ignore[import-untyped]
import orjson

from aigw.cache.writer import BatchWriter
from aigw.config import CacheConfig
from aigw.state.files import write_atomic

log = logging.getLogger("aigw.cache")

_FORMAT = 1
_ERROR_LOG_EVERY_S = 60.0
_CULL_EVERY = 1000  # entries written between eviction passes (size may overshoot by that much)
_TAGS_FILE = "aigw-tags.json"
_SQLITE_CACHE_PAGES = 1024  # 4 MiB of page cache; diskcache's default (32 MiB) only grows RSS


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A stored answer: the response body as JSON bytes (a chat completion in its non-streaming
    form, or an embeddings list), and what the usage log and the headers need."""

    kind: str
    provider: str
    model: str
    body: bytes
    prompt_tokens: int
    completion_tokens: int
    stored_at: float
    expires_at: float

    def encode(self) -> bytes:
        head = {
            "v": _FORMAT,
            "kind": self.kind,
            "provider": self.provider,
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "stored_at": self.stored_at,
            "expires_at": self.expires_at,
        }
        return orjson.dumps(head) + b"\n" + self.body

    @classmethod
    def decode(cls, raw: bytes) -> CachedAnswer | None:
        """None for anything that is not an entry of this format."""
        head_raw, sep, body = raw.partition(b"\n")
        if not sep:
            return None
        try:
            h = orjson.loads(head_raw)
            if not isinstance(h, dict) or h.get("v") != _FORMAT:
                return None
            return cls(
                str(h["kind"]),
                str(h["provider"]),
                str(h["model"]),
                body,
                int(h["prompt_tokens"]),
                int(h["completion_tokens"]),
                float(h["stored_at"]),
                float(h["expires_at"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    @property
    def size(self) -> int:
        return len(self.body) + 200


@dataclass(frozen=True, slots=True)
class StoreStats:
    entries: int
    size_bytes: int
    max_size_bytes: int
    memory_entries: int
    memory_bytes: int
    available: bool


def _is_corruption(e: BaseException) -> bool:
    """A damaged database file (not a lock, a full disk or a constraint: those have subclasses)."""
    return type(e) is sqlite3.DatabaseError


class ResponseStore:
    def __init__(
        self,
        directory: Path,
        *,
        ttl_s: float,
        max_size_bytes: int,
        memory_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.ttl_s = ttl_s
        self.max_size_bytes = max_size_bytes
        self._memory_max = memory_bytes
        self._clock = clock
        self._memory: OrderedDict[str, CachedAnswer] = OrderedDict()
        self._memory_used = 0
        self._mu = threading.Lock()  # the memory LRU is shared with the writer thread
        self._writer: BatchWriter[tuple[str, CachedAnswer, str]] = BatchWriter(self._write)
        self._last_error_log = float("-inf")
        self._written = 0  # since the last cull (writer thread only)
        self._swap = threading.Lock()  # replacing a damaged disk cache (any thread may find it)
        self._tags = _TagIndex(directory / _TAGS_FILE)
        self._disk: diskcache.Cache | None = self._open()

    # -- opening and recovery ------------------------------------------------------------------

    def _connect(self) -> diskcache.Cache:
        # The answers are the user's alone: the directory 0700 (tightened if an earlier version
        # made it wider; the daemon's umask makes what diskcache creates 0600).
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory.chmod(0o700)
        disk = diskcache.Cache(
            str(self.directory),
            timeout=0.05,  # never wait long for a lock: a busy cache is a miss
            size_limit=self.max_size_bytes,
            eviction_policy="least-recently-stored",  # reads never write
            tag_index=True,
            statistics=False,
            sqlite_cache_size=_SQLITE_CACHE_PAGES,
            cull_limit=0,  # no eviction scan inside every set: the writer culls now and then
        )
        disk.get("\0probe")  # reads the schema: a damaged file fails here, not on a request
        return disk

    def _open(self) -> diskcache.Cache | None:
        try:
            return self._connect()
        except sqlite3.DatabaseError as e:
            if not _is_corruption(e):
                log.error(
                    "response cache at %s cannot be opened (%s); running without a cache", self.directory, e
                )
                return None
            return self._replace_corrupt(e)
        except OSError as e:
            log.error(
                "response cache at %s cannot be opened (%s); running without a cache", self.directory, e
            )
            return None

    def _replace_corrupt(self, e: BaseException) -> diskcache.Cache | None:
        aside = self.directory.with_name(f"{self.directory.name}.corrupt-{int(time.time())}")
        log.error(
            "response cache at %s is damaged (%s); moved it to %s and started empty", self.directory, e, aside
        )
        try:
            if self.directory.exists():
                shutil.move(str(self.directory), str(aside))
            return self._connect()
        except (OSError, sqlite3.Error) as e2:
            log.error("response cache cannot be recreated (%s); running without a cache", e2)
            return None

    def _failed(self, what: str, e: BaseException, disk: diskcache.Cache | None) -> None:
        """`disk` failed at `what`. A damaged one is replaced, once, however many threads find it."""
        if _is_corruption(e) and disk is not None:
            with self._swap:
                if self._disk is disk:
                    self._disk = None
                    self._close_quietly(disk)
                    self._disk = self._replace_corrupt(e)
            return
        now = time.monotonic()
        if now - self._last_error_log >= _ERROR_LOG_EVERY_S:
            self._last_error_log = now
            log.warning("response cache: %s failed (%s: %s); treated as a miss", what, type(e).__name__, e)

    @staticmethod
    def _close_quietly(disk: diskcache.Cache) -> None:
        try:
            disk.close()
        except (sqlite3.Error, OSError) as e:  # it is damaged: closing may fail too
            log.warning("response cache: closing the damaged cache failed (%s)", e)

    @property
    def available(self) -> bool:
        return self._disk is not None

    # -- reads and writes ----------------------------------------------------------------------

    def get(self, key: str) -> CachedAnswer | None:
        now = self._clock()
        with self._mu:
            hit = self._memory.get(key)
            if hit is not None:
                if hit.expires_at > now:
                    self._memory.move_to_end(key)
                    return hit
                self._forget(key)
        disk = self._disk
        if disk is None:
            return None
        try:
            raw = disk.get(key)
        except (sqlite3.Error, OSError, diskcache.Timeout) as e:
            self._failed("a read", e, disk)
            return None
        if not isinstance(raw, bytes):
            return None
        answer = CachedAnswer.decode(raw)
        if answer is None or answer.expires_at <= now:
            return None
        self._remember(key, answer)
        return answer

    def put(self, key: str, answer: CachedAnswer, tag: str) -> None:
        """Store an answer: in memory now, on disk shortly (off the caller's thread)."""
        self._remember(key, answer)
        if self._disk is not None:
            self._writer.submit((key, answer, tag))

    def _write(self, batch: Sequence[tuple[str, CachedAnswer, str]]) -> None:
        """Runs on the writer thread: one transaction for the whole batch."""
        disk = self._disk
        if disk is None:
            return
        now = self._clock()
        try:
            with disk.transact(retry=True):
                for key, answer, tag in batch:
                    disk.set(key, answer.encode(), expire=max(answer.expires_at - now, 1.0), tag=tag)
            self._tags.add(tag for _, _, tag in batch)
            self._written += len(batch)
            if self._written >= _CULL_EVERY:
                self._written = 0
                disk.cull(retry=True)  # drop expired entries, then the oldest beyond the size limit
        except (sqlite3.Error, OSError, diskcache.Timeout) as e:
            self._failed("a write", e, disk)

    def answer(
        self, kind: str, target: tuple[str, str], body: bytes, tokens: tuple[int, int]
    ) -> CachedAnswer:
        """A new entry stored now: `target` is (provider, model), `tokens` (prompt, completion)."""
        now = self._clock()
        return CachedAnswer(kind, target[0], target[1], body, tokens[0], tokens[1], now, now + self.ttl_s)

    def _remember(self, key: str, answer: CachedAnswer) -> None:
        with self._mu:
            self._forget(key)  # even when the new answer is too big to keep: never serve the old one
            if answer.size > self._memory_max // 8:
                return  # a huge answer would flush everything else out
            self._memory[key] = answer
            self._memory_used += answer.size
            while self._memory_used > self._memory_max and self._memory:
                _, old = self._memory.popitem(last=False)
                self._memory_used -= old.size

    def _forget(self, key: str) -> None:
        old = self._memory.pop(key, None)
        if old is not None:
            self._memory_used -= old.size

    # -- management (blocking: call off the event loop) -----------------------------------------

    def flush(self) -> None:
        """Wait until every write submitted so far is on disk."""
        self._writer.flush()

    def clear(self, models: Collection[str] | None = None) -> int:
        """Remove every entry, or those answered by the given models; each is "provider/model"
        or a bare model name (any provider's). The number removed from disk."""
        self.flush()
        wanted = None if models is None else set(models)

        def matches(tag: str) -> bool:
            return wanted is None or tag in wanted or tag.split("/", 1)[-1] in wanted

        with self._mu:
            for k in [k for k, a in self._memory.items() if matches(f"{a.provider}/{a.model}")]:
                self._forget(k)
        disk = self._disk
        if disk is None:
            return 0
        try:
            if wanted is None:
                removed = int(disk.clear(retry=True))
                self._tags.forget(self._tags.all())
                return removed
            tags = [t for t in self._tags.all() if matches(t)]
            removed = sum(int(disk.evict(t, retry=True)) for t in tags)
            self._tags.forget(tags)
            return removed
        except (sqlite3.Error, OSError) as e:
            self._failed("clearing", e, disk)
            return 0

    def stats(self) -> StoreStats:
        entries = size = 0
        disk = self._disk
        if disk is not None:
            try:
                entries, size = len(disk), int(disk.volume())
            except (sqlite3.Error, OSError, diskcache.Timeout) as e:
                self._failed("reading its size", e, disk)
        with self._mu:
            mem_n, mem_b = len(self._memory), self._memory_used
        return StoreStats(entries, size, self.max_size_bytes, mem_n, mem_b, disk is not None)

    def close(self) -> None:
        self._writer.close()
        if self._disk is not None:
            self._disk.close()
            self._disk = None


class _TagIndex:
    """The tags (provider/model) entries were stored under, kept beside the cache in a small JSON
    file, so clearing one model's answers needs no query into diskcache's own tables. Written by
    the writer thread when a new tag appears; read when clearing (after the writer has flushed)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._known: set[str] | None = None

    def _load(self) -> set[str]:
        if self._known is None:
            try:
                data = orjson.loads(self._path.read_bytes())
                self._known = {t for t in data if isinstance(t, str)} if isinstance(data, list) else set()
            except (OSError, orjson.JSONDecodeError):
                self._known = set()
        return self._known

    def _save(self, tags: set[str]) -> None:
        try:
            write_atomic(self._path, orjson.dumps(sorted(tags)))
        except OSError as e:
            log.warning("response cache: cannot record its tags in %s (%s)", self._path, e)

    def add(self, tags: Iterable[str]) -> None:
        with self._lock:
            known = self._load()
            new = set(tags) - known
            if new:
                known |= new
                self._save(known)

    def all(self) -> list[str]:
        with self._lock:
            return sorted(self._load())

    def forget(self, tags: Iterable[str]) -> None:
        with self._lock:
            known = self._load()
            known.difference_update(tags)
            self._save(known)


def open_store(directory: Path, config: CacheConfig, clock: Callable[[], float] = time.time) -> ResponseStore:
    return ResponseStore(
        directory,
        ttl_s=float(config.ttl_s),
        max_size_bytes=int(config.max_size_mb * 1024 * 1024),
        memory_bytes=int(config.memory_mb * 1024 * 1024),
        clock=clock,
    )
