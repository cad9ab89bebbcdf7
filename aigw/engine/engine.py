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
* The system's memory pressure is polled too; under pressure idle models' prompt caches, then
  idle models, are given back before the system swaps (`relieve`; the policy is aigw.engine.relief).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aigw.engine import relief
from aigw.engine.backend import Backend, GenResult, LoadedModel, ModelSpec, Pending
from aigw.engine.memory import MemoryFacts, Pressure, real_memory_facts
from aigw.engine.relief import PressureWatch, Relief
from aigw.engine.slot import Event, Job, LocalModelError, Slot, Stop
from aigw.errors import AigwError, ServiceUnavailable

__all__ = ["FOREVER", "Engine", "EngineLimits", "Job", "LocalModelError"]

log = logging.getLogger("aigw.local")
R = TypeVar("R")
GiB = 1024**3
FOREVER = float("inf")


@dataclass(frozen=True, slots=True)
class EngineLimits:
    memory_budget_bytes: int
    keep_alive_s: float = 300.0
    max_queue: int = 8
    load_wait_s: float = 30.0
    pressure_poll_s: float = relief.POLL_S
    """How often the system's memory pressure is read (0: never)."""


class Engine:
    def __init__(
        self,
        limits: EngineLimits,
        clock: Callable[[], float] = time.monotonic,
        memory: MemoryFacts | None = None,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self.memory_facts = memory or real_memory_facts()
        self._watch = PressureWatch(
            self.memory_facts.pressure, self.relieve, poll_s=limits.pressure_poll_s, clock=clock
        )
        self._models: dict[str, tuple[ModelSpec, Backend]] = {}
        self._slots: dict[str, Slot] = {}
        self._cond: asyncio.Condition | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
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
            if self.limits.pressure_poll_s > 0:
                self._watcher = asyncio.create_task(self._watch.run())
        return self._cond

    # -- loading and unloading ----------------------------------------------------------------

    def _used(self) -> int:
        """Memory the loaded models hold: their estimates and their saved prompt states."""
        return sum(s.size + s.cache_bytes() for s in self._slots.values())

    def _drop_caches(self, want: int) -> int:
        """Free saved prompt states, least recently used model first, until `want` bytes are
        freed (or none are left); the bytes freed. Models are unloaded only after this."""
        freed = 0
        for slot in sorted(self._slots.values(), key=lambda s: s.last_used):
            if freed >= want:
                break
            if slot.model is not None and slot.cache_bytes():
                freed += slot.model.drop_cache()
        if freed:
            log.info("dropped %d bytes of saved prompt states to make room", freed)
        return freed

    async def load(self, key: str, keep_alive_s: float | None = None) -> Slot:
        """The model's slot, loading it first (within the memory budget) when needed; with
        `keep_alive_s`, it then stays loaded that long after its last use (FOREVER: until unloaded)."""
        cond = self._condition()
        async with cond:
            slot = self._live(key) or await self._admit(key)
        await asyncio.shield(slot.ready)
        if keep_alive_s is not None:
            slot.keep_alive_s = keep_alive_s
            slot.last_used = self._clock()
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
            if self._drop_caches(self._used() + need - budget):
                continue
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
        slot.jobs.put(Stop())
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

    async def relieve(self, level: Pressure) -> Relief:
        """Give memory back to the system: idle models' prompt caches, then idle models (LRU first)."""
        cond = self._condition()
        async with cond:
            idle = sorted((s for s in self._slots.values() if not s.busy), key=lambda s: s.last_used)
            dropping = [s for s in idle if level is Pressure.WARNING and s.model is not None]
            for slot in dropping:
                slot.pending += 1  # busy while its cache drops: nothing unloads it meanwhile
        try:
            freed = await asyncio.gather(*(self._drop_cache(s) for s in dropping))
        finally:
            for slot in dropping:
                slot.pending -= 1
            if dropping:
                self._spawn_notify()
        async with cond:
            still = [s for s in idle if self._slots.get(s.key) is s and not s.busy]
            candidates = [relief.Idle(s.key, pinned=s.keep_alive_s == FOREVER) for s in still]
            chosen = relief.to_unload(level, candidates, sum(freed))
            for slot in (s for s in still if s.key in chosen):
                await self._unload(slot)
        caches = {s.key: n for s, n in zip(dropping, freed, strict=True) if n > 0}
        given = Relief(level, caches, tuple(chosen))
        relief.report(given)
        return given

    async def _drop_cache(self, slot: Slot) -> int:
        """The slot's prompt caches dropped on its owner thread (not counted as a request)."""
        job: Job[int] = Job(lambda model, _job: model.drop_cache(), asyncio.get_running_loop())
        slot.jobs.put(job)
        try:
            return await job.wait()
        except AigwError as e:
            log.warning("dropping the prompt cache of %s failed: %s", slot.key, e)
            return 0

    # -- running work -------------------------------------------------------------------------

    async def submit(
        self, key: str, fn: Callable[[LoadedModel, Job[R]], R | Pending], keep_alive_s: float | None = None
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
            parallel, active = slot.slots()
            out.append(
                {
                    "model": key,
                    "state": "loading" if loading else ("busy" if slot.pending else "idle"),
                    "memory_bytes": slot.size,
                    "queue_depth": slot.pending,
                    "parallel": parallel,
                    "active": active,
                    "cache_bytes": slot.cache_bytes(),
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
        for task in (self._reaper, self._watcher):
            if task is not None:
                task.cancel()
        slots = list(self._slots.values())
        self._slots.clear()
        for slot in slots:
            slot.jobs.put(Stop())  # each thread frees its model after the work already queued
        if slots:
            await asyncio.wait([asyncio.shield(s.gone) for s in slots], timeout=10)
