"""A loaded model's owner thread: its job queue, the jobs that cross back to the event loop, and
the loop that runs them — a batching model's generations in steps, together (aigw.engine.engine
schedules the slots).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable
from enum import Enum
from typing import Any, Generic, TypeVar

from aigw.engine.backend import Backend, LoadedModel, ModelSpec, Pending
from aigw.errors import AigwError, UpstreamError

log = logging.getLogger("aigw.local")
R = TypeVar("R")


class LocalModelError(UpstreamError):
    """A local model failed to load or to run."""

    code = "local_model_error"


class Stop:
    """Put on a slot's queue: its thread frees the model after the work already queued."""


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
        fn: Callable[[LoadedModel, Job[R]], R | Pending],
        loop: asyncio.AbstractEventLoop,
        on_done: Callable[[Job[R]], None] | None = None,
    ) -> None:
        self.fn = fn
        self._on_done = on_done
        self.cancelled = False
        self.waited_s = 0.0
        """How long its submission waited (for the model to load)."""
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
        self.jobs: queue.SimpleQueue[Job[Any] | Stop] = queue.SimpleQueue()
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

    def slots(self) -> tuple[int, int]:
        """(slots, slots in use): a batching model's own count, else one, in use while it works."""
        model = self.model
        got = model.slots() if model is not None and self.ready.done() else None
        return got if got is not None else (1, min(self.pending, 1))

    def cache_bytes(self) -> int:
        """Memory in the model's saved prompt states (read from the loop; an int, so safe)."""
        model = self.model
        return model.cache_bytes() if model is not None and self.ready.done() else 0

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
        runs: list[tuple[Job[Any], Pending]] = []
        stopping = False
        while True:
            if not runs:
                if stopping:
                    break
                item: Job[Any] | Stop | None = self.jobs.get()
            else:
                try:
                    item = self.jobs.get_nowait()
                except queue.Empty:
                    item = None
            if isinstance(item, Stop):
                stopping = True  # after the generations already running
            elif item is not None:
                self._start(item, runs)  # every queued job starts before the next step
            else:
                self._step(runs)
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

    def _start(self, job: Job[Any], runs: list[tuple[Job[Any], Pending]]) -> None:
        """Run a job; a generation a batching model began joins `runs`."""
        if job.cancelled:
            job._finish(Event.ERROR, LocalModelError(f"{self.key}: request cancelled", provider=self.key))
            return
        assert self.model is not None
        try:
            out = job.fn(self.model, job)
            if isinstance(out, Pending):
                if not out.done:
                    runs.append((job, out))
                    return
                out = out.outcome()
            job._finish(Event.DONE, out)
        except Exception as e:
            job._finish(Event.ERROR, self._failure(e))

    def _step(self, runs: list[tuple[Job[Any], Pending]]) -> None:
        """One step of the model's batch; the generations it finished leave."""
        assert self.model is not None
        try:
            self.model.step()
        except Exception as e:  # the batch is lost: every generation in it fails, the model stays
            err = self._failure(e)
            for job, _ in runs:
                job.cancelled = True  # so the model drops it at its next step
                job._finish(Event.ERROR, err)
            runs.clear()
            return
        for job, run in [r for r in runs if r[1].done]:
            runs.remove((job, run))
            try:
                job._finish(Event.DONE, run.outcome())
            except Exception as e:
                job._finish(Event.ERROR, self._failure(e))

    def _failure(self, e: Exception) -> AigwError:
        if isinstance(e, AigwError):
            return e
        log.warning("%s failed: %s: %s", self.key, type(e).__name__, e)  # a backend bug
        return LocalModelError(f"{self.key}: {type(e).__name__}: {e}", provider=self.key)


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
