"""The local engine: one owner thread per loaded model, bounded queues, keep-alive, memory budget.

* Each loaded model lives on its own thread, which runs every job for it in order: loading,
  generation, embedding, unloading. Inference libraries are not thread-safe per model; a single
  owner makes that a non-issue and keeps the event loop free.
* Jobs queue per model, up to `max_queue` (running included); beyond it → 503 with Retry-After.
* Output crosses to the event loop as it is produced (`call_soon_threadsafe`). A consumer that
  goes away marks its job cancelled; the backend sees that at the next token and stops.
* After its last job a model stays loaded for its keep-alive, then unloads. Loading a model that
  would exceed the memory budget first unloads idle models, least recently used first; a model
  with running or queued work is never unloaded — the load waits for one to become idle (up to
  `load_wait_s`) and otherwise fails with a clear 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

from aigw.engine.backend import Backend, GenResult, LoadedModel, ModelSpec
from aigw.errors import AigwError, ServiceUnavailable, UpstreamError

log = logging.getLogger("aigw.local")
R = TypeVar("R")
GiB = 1024**3
FOREVER = float("inf")


class LocalModelError(UpstreamError):
    """A local model failed to load or to run."""

    code = "local_model_error"


@dataclass(frozen=True, slots=True)
class EngineLimits:
    memory_budget_bytes: int
    keep_alive_s: float = 300.0
    max_queue: int = 8
    load_wait_s: float = 30.0


class _Stop:
    pass


class Event(Enum):
    """What crosses from a model's owner thread to the event loop for one job."""

    ITEM = "item"
    """A piece of output (more may follow)."""
    DONE = "done"
    """The job's result."""
    ERROR = "error"
    """The job failed; the value is the exception."""


class Job(Generic[R]):
    """Work for a model's owner thread; its output and result cross back to the event loop."""

    def __init__(
        self,
        fn: Callable[[LoadedModel, Job[R]], R],
        loop: asyncio.AbstractEventLoop,
        on_done: Callable[[Job[R]], None] | None = None,
    ) -> None:
        self.fn = fn
        self._on_done = on_done
        self.cancelled = False
        self._loop = loop
        self._events: asyncio.Queue[tuple[Event, Any]] = asyncio.Queue()

    # -- owner thread side --------------------------------------------------------------------
    def emit(self, item: Any) -> bool:
        """Hand a piece of output to the consumer; False once the consumer has gone."""
        if self.cancelled:
            return False
        _call_soon(self._loop, self._events.put_nowait, (Event.ITEM, item))
        return True

    def _finish(self, kind: Event, value: Any) -> None:
        _call_soon(self._loop, self._complete, kind, value)

    def _complete(self, kind: Event, value: Any) -> None:
        self.outcome = (kind, value)
        if self._on_done is not None:
            self._on_done(self)  # bookkeeping first: whoever awaits the result sees it settled
        self._events.put_nowait((kind, value))

    # -- event loop side ----------------------------------------------------------------------
    async def items(self) -> AsyncIterator[Any]:
        """Output as it is produced; then the result (`result()`) is ready. Leaving early cancels."""
        try:
            while True:
                kind, value = await self._events.get()
                if kind is Event.ITEM:
                    yield value
                    continue
                self._result = (kind, value)
                return
        finally:
            if not hasattr(self, "_result"):
                self.cancelled = True

    def result(self) -> R:
        kind, value = self._result
        if kind is Event.ERROR:
            raise value
        result: R = value
        return result

    async def wait(self) -> R:
        async for _ in self.items():
            pass
        return self.result()


class Slot:
    """One model: its owner thread, its queue, and its bookkeeping (touched on the loop only)."""

    def __init__(
        self, key: str, spec: ModelSpec, backend: Backend, size: int, *, now: float, keep_alive_s: float
    ) -> None:
        self.key = key
        self.spec = spec
        self.backend = backend
        self.size = size
        self.model: LoadedModel | None = None
        self.jobs: queue.SimpleQueue[Job[Any] | _Stop] = queue.SimpleQueue()
        self.pending = 0
        self.requests = 0
        self.tokens_out = 0
        self.loaded_at = now
        self.last_used = now
        self.keep_alive_s = keep_alive_s
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.thread = threading.Thread(target=self._run, name=f"aigw-model-{key}", daemon=True)

    @property
    def busy(self) -> bool:
        return self.pending > 0 or not self.ready.done()

    def expires_at(self) -> float:
        return self.last_used + self.keep_alive_s

    def _run(self) -> None:
        loop = self.ready.get_loop()
        try:
            self.model = self.backend.load(self.spec)
        except Exception as e:  # any load failure ends this slot; the loop side reports it
            log.warning("loading %s failed: %s: %s", self.key, type(e).__name__, e)
            err = LocalModelError(f"{self.key}: cannot load {self.spec.path.name}: {e}", provider=self.key)
            _call_soon(loop, _settle, self.ready, err)
            _call_soon(loop, _settle, self.gone, None)
            return
        _call_soon(loop, _settle, self.ready, None)
        while True:
            job = self.jobs.get()
            if isinstance(job, _Stop):
                break
            if job.cancelled:
                job._finish(Event.ERROR, LocalModelError(f"{self.key}: request cancelled", provider=self.key))
                continue
            try:
                job._finish(Event.DONE, job.fn(self.model, job))
            except AigwError as e:
                job._finish(Event.ERROR, e)
            except Exception as e:  # a backend bug must not kill the owner thread
                log.warning("%s failed: %s: %s", self.key, type(e).__name__, e)
                err = LocalModelError(f"{self.key}: {type(e).__name__}: {e}", provider=self.key)
                job._finish(Event.ERROR, err)
        gone = LocalModelError(f"{self.key}: the model was unloaded", provider=self.key)
        while True:  # nothing may wait forever on a queue no one reads any more
            try:
                left = self.jobs.get_nowait()
            except queue.Empty:
                break
            if isinstance(left, Job):
                left._finish(Event.ERROR, gone)
        try:
            self.model.close()
        except Exception as e:
            log.warning("closing %s failed: %s: %s", self.key, type(e).__name__, e)
        finally:
            self.model = None
            _call_soon(loop, _settle, self.gone, None)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    """From an owner thread: run `fn` on the loop; a loop already closed (process exit) is fine."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


def _settle(fut: asyncio.Future[None], err: BaseException | None) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(err)


class Engine:
    def __init__(self, limits: EngineLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._models: dict[str, tuple[ModelSpec, Backend]] = {}
        self._slots: dict[str, Slot] = {}
        self._cond: asyncio.Condition | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def register(self, key: str, spec: ModelSpec, backend: Backend) -> None:
        self._models[key] = (spec, backend)

    def knows(self, key: str) -> bool:
        return key in self._models

    def slot_status(self, key: str) -> dict[str, Any] | None:
        return next((s for s in self.status() if s["model"] == key), None)

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
            self._reaper = asyncio.create_task(self._reap_forever())
        return self._cond

    # -- loading and unloading ----------------------------------------------------------------

    def _used(self) -> int:
        return sum(s.size for s in self._slots.values())

    async def load(self, key: str) -> Slot:
        """The model's slot, loading it first (within the memory budget) when needed."""
        cond = self._condition()
        async with cond:
            slot = self._live(key) or await self._admit(key)
        await asyncio.shield(slot.ready)
        return slot

    async def _admit(self, key: str) -> Slot:
        """Make room and start loading. Called with the condition held."""
        assert self._cond is not None
        if self._closed:
            raise ServiceUnavailable("aigw is shutting down")
        spec, backend = self._models[key]
        try:
            need = backend.estimate_bytes(spec)
        except OSError as e:
            raise LocalModelError(f"{key}: cannot read {spec.path}: {e.strerror}", provider=key) from None
        budget = self.limits.memory_budget_bytes
        if need > budget:
            raise ServiceUnavailable(
                f"{key} needs {need / GiB:.2f} GiB, more than the whole memory budget of "
                f"{budget / GiB:.2f} GiB (raise [local] memory_budget_gb)"
            )
        deadline = self._clock() + self.limits.load_wait_s
        while self._used() + need > budget:
            if (other := self._live(key)) is not None:
                return other  # another request admitted it while this one waited
            idle = [s for s in self._slots.values() if not s.busy]
            if idle:
                await self._unload(min(idle, key=lambda s: s.last_used))
                continue
            remaining = deadline - self._clock()
            busy = ", ".join(sorted(self._slots))
            if remaining <= 0:
                raise ServiceUnavailable(
                    f"cannot load {key} ({need / GiB:.2f} GiB): the memory budget is held by busy "
                    f"models ({busy}); try again shortly",
                    retry_after=5,
                )
            try:
                await asyncio.wait_for(self._cond.wait(), remaining)
            except TimeoutError:
                continue
        if (other := self._live(key)) is not None:
            return other
        slot = Slot(key, spec, backend, need, now=self._clock(), keep_alive_s=self.limits.keep_alive_s)
        self._slots[key] = slot
        slot.thread.start()
        slot.ready.add_done_callback(lambda f: self._load_done(slot, f))
        return slot

    def _live(self, key: str) -> Slot | None:
        """The model's slot, unless there is none or its load already failed."""
        slot = self._slots.get(key)
        if slot is not None and slot.ready.done() and slot.ready.exception() is not None:
            return None
        return slot

    def _load_done(self, slot: Slot, fut: asyncio.Future[None]) -> None:
        slot.loaded_at = slot.last_used = self._clock()
        if fut.exception() is not None and self._slots.get(slot.key) is slot:
            del self._slots[slot.key]
        self._spawn_notify()

    def _spawn_notify(self) -> None:
        task = asyncio.get_running_loop().create_task(self._notify())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        assert self._cond is not None
        async with self._cond:
            self._cond.notify_all()

    async def _unload(self, slot: Slot) -> None:
        """Stop the slot's thread after its queue; called with the condition held."""
        if self._slots.get(slot.key) is slot:
            del self._slots[slot.key]
        slot.jobs.put(_Stop())
        await asyncio.shield(slot.gone)
        log.info("unloaded %s", slot.key)

    async def unload(self, key: str) -> bool:
        """Free a model now (after its queued work). False when it was not loaded."""
        cond = self._condition()
        async with cond:
            slot = self._slots.get(key)
            if slot is None:
                return False
            if slot.busy:
                raise ServiceUnavailable(f"{key} is busy ({slot.pending} requests); unload it when idle")
            await self._unload(slot)
            return True

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            await self.reap()

    async def reap(self) -> None:
        """Unload models whose keep-alive has run out."""
        cond = self._condition()
        now = self._clock()
        async with cond:
            for slot in [s for s in self._slots.values() if not s.busy and s.expires_at() <= now]:
                await self._unload(slot)

    # -- running work -------------------------------------------------------------------------

    async def submit(
        self, key: str, fn: Callable[[LoadedModel, Job[R]], R], keep_alive_s: float | None = None
    ) -> Job[R]:
        """Queue `fn` for the model's owner thread (loading the model first if needed).

        The request holds its place in the model's queue from the first moment, while the model
        may still be loading: a slot with a place taken is busy, so nothing can unload it.
        """
        cond = self._condition()
        async with cond:
            slot = self._live(key) or await self._admit(key)
            if slot.pending >= self.limits.max_queue:
                raise ServiceUnavailable(
                    f"{key} is at its queue limit ({self.limits.max_queue} requests); try again shortly",
                    retry_after=1,
                )
            slot.pending += 1
        try:
            await asyncio.shield(slot.ready)
            if self._slots.get(key) is not slot:  # shut down while it was loading
                raise ServiceUnavailable(f"{key} was unloaded while loading; try again", retry_after=1)
        except BaseException:
            slot.pending -= 1
            self._spawn_notify()
            raise
        job: Job[R] = Job(fn, asyncio.get_running_loop(), lambda j: self._job_done(slot, j))
        slot.keep_alive_s = self.limits.keep_alive_s if keep_alive_s is None else keep_alive_s
        slot.jobs.put(job)
        return job

    def _job_done(self, slot: Slot, job: Job[Any]) -> None:
        slot.pending -= 1
        slot.requests += 1
        slot.last_used = self._clock()
        kind, value = job.outcome
        if kind is Event.DONE and isinstance(value, GenResult):
            slot.tokens_out += value.completion_tokens
        self._spawn_notify()

    # -- status -------------------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        now = self._clock()
        out = []
        for key, slot in sorted(self._slots.items()):
            loading = not slot.ready.done()
            expires = None if slot.busy or slot.keep_alive_s == FOREVER else max(0.0, slot.expires_at() - now)
            out.append(
                {
                    "model": key,
                    "state": "loading" if loading else ("busy" if slot.pending else "idle"),
                    "memory_bytes": slot.size,
                    "queue_depth": slot.pending,
                    "parallel": 1,
                    "active": min(slot.pending, 1),
                    "cache_bytes": 0,
                    "requests": slot.requests,
                    "tokens_generated": slot.tokens_out,
                    "unloads_in_s": None if expires is None else round(expires, 1),
                    "keep_alive_s": None if slot.keep_alive_s == FOREVER else slot.keep_alive_s,
                }
            )
        return out

    def memory(self) -> dict[str, int]:
        return {"budget_bytes": self.limits.memory_budget_bytes, "used_bytes": self._used()}

    async def aclose(self) -> None:
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        slots = list(self._slots.values())
        self._slots.clear()
        for slot in slots:
            slot.jobs.put(_Stop())  # each thread frees its model after the work already queued
        if slots:
            await asyncio.wait([asyncio.shield(s.gone) for s in slots], timeout=10)
