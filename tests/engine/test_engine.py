"""The engine's scheduling rules with an in-memory backend (the real engines are tested in tests/local)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from aigw.domain import Capability
from aigw.engine.backend import Emit, GenParams, GenResult, LoadedModel, ModelSpec, Sequential
from aigw.engine.engine import Engine, EngineLimits, Job
from aigw.errors import ServiceUnavailable


class Echo(Sequential):
    def __init__(self, gate: threading.Event | None) -> None:
        self.gate = gate

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
