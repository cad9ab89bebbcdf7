"""The engine's scheduling rules with an in-memory backend (the real engines are tested in tests/local)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from aigw.domain import Capability
from aigw.engine.backend import Emit, Finished, GenParams, GenResult, LoadedModel, ModelSpec
from aigw.engine.engine import Engine, EngineLimits, Job
from aigw.errors import ServiceUnavailable


class Echo:
    """A model that runs one generation at a time."""

    def __init__(self, gate: threading.Event | None) -> None:
        self.gate = gate

    def begin(self, messages: list[dict[str, Any]], params: GenParams, emit: Emit, alive: Any) -> Any:
        return Finished(self.generate(messages, params, emit))

    def step(self) -> None:
        pass

    def cache_bytes(self) -> int:
        return 0

    def drop_cache(self) -> int:
        return 0

    def slots(self) -> tuple[int, int] | None:
        return None

    def capabilities(self) -> frozenset[Capability]:
        return frozenset({Capability.CHAT})

    def generate(self, messages: list[dict[str, Any]], params: GenParams, emit: Emit) -> GenResult:
        if self.gate is not None:
            self.gate.wait(5)
        emit("hi")
        return GenResult("hi", "stop", 1, 1)

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        return [], 0

    def describe(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


class EchoBackend:
    kind = "echo"

    def __init__(self, size: int = 100, gate: threading.Event | None = None) -> None:
        self.size = size
        self.gate = gate
        self.loads: list[str] = []

    def discover(self, models_dir: Path) -> dict[str, Path]:
        return {}

    def estimate_bytes(self, spec: ModelSpec) -> int:
        return self.size

    def load(self, spec: ModelSpec) -> LoadedModel:
        self.loads.append(spec.name)
        return Echo(self.gate)


PARAMS = GenParams(None, 0.0, 1.0, (), None)


def run_job(model: LoadedModel, job: Job[GenResult]) -> GenResult:
    return model.generate([], PARAMS, job.emit)


def engine(backend: EchoBackend, budget: int = 1000, **kw: Any) -> Engine:
    e = Engine(EngineLimits(memory_budget_bytes=budget, **kw))
    for name in ("a", "b", "c"):
        e.register(f"p/{name}", ModelSpec(name, Path(name)), backend)
    return e


def test_keep_alive_zero_never_unloads_under_a_request() -> None:
    async def run() -> None:
        e = engine(EchoBackend(), keep_alive_s=0.0)
        stop = asyncio.Event()

        async def reap_constantly() -> None:
            while not stop.is_set():
                await e.reap()
                await asyncio.sleep(0)

        reaper = asyncio.create_task(reap_constantly())
        for _ in range(30):
            job = await e.submit("p/a", run_job, keep_alive_s=0.0)
            assert (await asyncio.wait_for(job.wait(), 5)).text == "hi"
        stop.set()
        await reaper
        await e.aclose()

    asyncio.run(run())


def test_lru_eviction_and_busy_models_stay() -> None:
    async def run() -> None:
        gate = threading.Event()
        backend = EchoBackend(size=400, gate=gate)
        e = engine(backend, budget=1000, load_wait_s=0.2)
        gate.set()
        for key in ("p/a", "p/b", "p/a"):
            await (await e.submit(key, run_job)).wait()
        await (await e.submit("p/c", run_job)).wait()  # evicts b, the least recently used
        assert [s["model"] for s in e.status()] == ["p/a", "p/c"]
        gate.clear()
        busy_a = await e.submit("p/a", run_job)
        busy_c = await e.submit("p/c", run_job)
        with pytest.raises(ServiceUnavailable, match="held by busy models"):
            await e.submit("p/b", run_job)
        gate.set()
        await busy_a.wait()
        await busy_c.wait()
        await (await e.submit("p/b", run_job)).wait()
        assert len(e.status()) == 2 and "p/b" in [s["model"] for s in e.status()]
        await e.aclose()

    asyncio.run(run())


def test_queue_limit() -> None:
    async def run() -> None:
        gate = threading.Event()
        e = engine(EchoBackend(gate=gate), max_queue=2)
        jobs = [await e.submit("p/a", run_job) for _ in range(2)]
        with pytest.raises(ServiceUnavailable, match="queue limit") as err:
            await e.submit("p/a", run_job)
        assert err.value.retry_after == 1
        gate.set()
        for j in jobs:
            await j.wait()
        await (await e.submit("p/a", run_job)).wait()
        await e.aclose()

    asyncio.run(run())


def test_two_waiting_loads_of_one_model_share_one_slot() -> None:
    async def run() -> None:
        gate = threading.Event()
        backend = EchoBackend(size=200, gate=gate)
        e = engine(backend, budget=250, load_wait_s=5)
        busy_b = await e.submit("p/b", run_job)  # holds the budget until the gate opens
        first = asyncio.create_task(e.submit("p/a", run_job))
        second = asyncio.create_task(e.submit("p/a", run_job))
        await asyncio.sleep(0.05)
        gate.set()
        await busy_b.wait()
        jobs = [await first, await second]
        for j in jobs:
            await j.wait()
        assert backend.loads.count("a") == 1
        assert [s["model"] for s in e.status()] == ["p/a"]
        await e.aclose()

    asyncio.run(run())


def test_work_queued_while_closing_fails_instead_of_hanging() -> None:
    async def run() -> None:
        e = engine(EchoBackend())
        pending = asyncio.create_task(e.submit("p/a", run_job))
        await asyncio.sleep(0)
        await e.aclose()
        with pytest.raises(ServiceUnavailable):
            job = await asyncio.wait_for(pending, 5)
            await asyncio.wait_for(job.wait(), 5)
        with pytest.raises(ServiceUnavailable, match="shutting down"):
            await e.submit("p/b", run_job)

    asyncio.run(run())


def test_missing_model_file_is_a_clear_error() -> None:
    from aigw.engine.engine import LocalModelError

    class Missing(EchoBackend):
        def estimate_bytes(self, spec: ModelSpec) -> int:
            raise FileNotFoundError(2, "No such file or directory")

    async def run() -> None:
        e = engine(Missing())
        with pytest.raises(LocalModelError, match="cannot read"):
            await e.submit("p/a", run_job)
        await e.aclose()

    asyncio.run(run())


class Counting:
    """A generation a batching model began: one token per step, done after `length`."""

    def __init__(self, length: int, emit: Emit, alive: Any) -> None:
        self.length, self.emit, self.alive = length, emit, alive
        self.made = 0
        self.done = False
        self.error: Exception | None = None

    def outcome(self) -> GenResult:
        if self.error is not None:
            raise self.error
        return GenResult("x" * self.made, "stop", 1, self.made)


class Batching(Echo):
    """Decodes every begun generation one token per step, as llama.cpp's batcher does."""

    def __init__(self, cache: int = 0) -> None:
        super().__init__(None)
        self.runs: list[Counting] = []
        self.steps: list[int] = []  # how many generations each step advanced
        self.fail_next = False
        self.cache = cache

    def begin(self, messages: list[dict[str, Any]], params: GenParams, emit: Emit, alive: Any) -> Counting:
        run = Counting(params.max_tokens or 1, emit, alive)
        self.runs.append(run)
        return run

    def step(self) -> None:
        live = [r for r in self.runs if not r.done]
        self.steps.append(len(live))
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("decode failed")
        for run in live:
            run.made += 1
            if not run.alive() or not run.emit("x") or run.made >= run.length:
                run.done = True
        time.sleep(0.002)

    def cache_bytes(self) -> int:
        return self.cache

    def drop_cache(self) -> int:
        freed, self.cache = self.cache, 0
        return freed


class BatchingBackend(EchoBackend):
    def __init__(self, size: int = 100, cache: int = 0) -> None:
        super().__init__(size)
        self.models: list[Batching] = []
        self.cache = cache

    def load(self, spec: ModelSpec) -> LoadedModel:
        self.models.append(Batching(self.cache))
        return self.models[-1]


def gen(tokens: int) -> Any:
    params = GenParams(tokens, 0.0, 1.0, (), None)

    def fn(model: LoadedModel, job: Job[GenResult]) -> Any:
        return model.begin([], params, job.emit, lambda: not job.cancelled)

    return fn


def test_generations_decode_together_and_leave_without_waiting() -> None:
    async def run() -> None:
        backend = BatchingBackend()
        e = engine(backend)
        long = await e.submit("p/a", gen(200))
        items = long.items()
        await anext(items)  # it is decoding
        short = await e.submit("p/a", gen(5))  # joins at the next step
        assert (await asyncio.wait_for(short.wait(), 5)).completion_tokens == 5
        async for _ in items:
            pass
        assert long.result().completion_tokens == 200
        model = backend.models[0]
        assert max(model.steps) == 2  # the two shared steps
        assert model.steps.count(2) == 5  # and the short one left after its five tokens
        await e.aclose()

    asyncio.run(run())


def test_a_cancelled_generation_leaves_at_the_next_step_and_a_failed_step_fails_only_its_batch() -> None:
    async def run() -> None:
        backend = BatchingBackend()
        e = engine(backend)
        gone = await e.submit("p/a", gen(10_000))
        stays = await e.submit("p/a", gen(50))
        items = gone.items()
        await anext(items)
        await items.aclose()  # the consumer goes away
        assert (await asyncio.wait_for(stays.wait(), 5)).completion_tokens == 50
        model = backend.models[0]
        assert model.runs[0].made < 100  # it stopped within a step of the cancel, not at 10,000
        model.fail_next = True
        failing = await e.submit("p/a", gen(10_000))
        with pytest.raises(Exception, match="decode failed"):
            await asyncio.wait_for(failing.wait(), 5)
        after = await e.submit("p/a", gen(3))  # the model keeps serving
        assert (await asyncio.wait_for(after.wait(), 5)).completion_tokens == 3
        assert model.runs[2].done and model.runs[2].made < 100  # the failed one left the batch
        await e.aclose()

    asyncio.run(run())


def test_saved_prompt_states_are_dropped_before_a_model_is_unloaded() -> None:
    async def run() -> None:
        backend = BatchingBackend(size=300, cache=200)
        e = engine(backend, budget=1000)
        await (await e.submit("p/a", gen(1))).wait()  # 300 + 200 saved
        await (await e.submit("p/b", gen(1))).wait()  # 500 + 300: fits; then 1,000 with b's states
        await (await e.submit("p/c", gen(1))).wait()  # 1,000 + 300: saved states go, no model does
        assert [s["model"] for s in e.status()] == ["p/a", "p/b", "p/c"]
        assert [m.cache for m in backend.models] == [0, 0, 200]
        await e.aclose()

    asyncio.run(run())
