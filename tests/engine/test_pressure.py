"""Memory pressure: the engine gives back idle models' prompt caches, then idle models, never busy
ones; with a real engine, the in-memory backend of test_engine and faked pressure readings."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from aigw.engine.backend import LoadedModel, ModelSpec
from aigw.engine.engine import FOREVER, Engine, EngineLimits
from aigw.engine.memory import GiB, MemoryFacts, Pressure
from aigw.engine.relief import PressureWatch, Relief
from tests.engine.test_engine import Echo, EchoBackend, run_job

CACHE_BYTES = 1000


class Caching(Echo):
    """A model with a prompt cache it can drop (as the local engines' models have)."""

    def __init__(self, gate: threading.Event | None, drops: list[tuple[str, str]], name: str) -> None:
        super().__init__(gate)
        self.cache = CACHE_BYTES
        self.drops = drops
        self.name = name

    def drop_cache(self) -> int:
        self.drops.append((self.name, threading.current_thread().name))
        freed, self.cache = self.cache, 0
        return freed


class CachingBackend(EchoBackend):
    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__(size=100, gate=gate)
        self.drops: list[tuple[str, str]] = []

    def load(self, spec: ModelSpec) -> LoadedModel:
        self.loads.append(spec.name)
        return Caching(self.gate, self.drops, spec.name)


class Readings:
    """Memory facts whose pressure the test sets."""

    def __init__(self) -> None:
        self.level = Pressure.NORMAL

    def facts(self) -> MemoryFacts:
        return MemoryFacts(
            apple_silicon=False,
            total_bytes=lambda: 8 * GiB,
            working_set_bytes=lambda: None,
            wired_limit_mb=lambda: None,
            pressure=lambda: self.level,
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(backend: EchoBackend, busy: EchoBackend | None = None, **kw: Any) -> tuple[Engine, Clock, Readings]:
    clock, readings = Clock(), Readings()
    limits = EngineLimits(memory_budget_bytes=10_000, **{"pressure_poll_s": 0.0, **kw})
    e = Engine(limits, clock=clock, memory=readings.facts())
    for name in ("a", "b"):
        e.register(f"p/{name}", ModelSpec(name, Path(name)), backend)
    e.register("p/c", ModelSpec("c", Path("c")), busy or backend)
    return e, clock, readings


def loaded(e: Engine) -> list[str]:
    return [s["model"] for s in e.status()]


async def use(e: Engine, clock: Clock, *keys: str, keep_alive_s: float | None = None) -> None:
    for key in keys:
        clock.now += 1
        await (await e.submit(key, run_job, keep_alive_s=keep_alive_s)).wait()


def test_a_warning_drops_idle_caches_first_then_unloads_one_idle_model_a_round() -> None:
    async def run() -> None:
        gate = threading.Event()
        backend, busy_backend = CachingBackend(), CachingBackend(gate)
        e, clock, _ = make(backend, busy_backend)
        await use(e, clock, "p/b", "p/a")  # a is the more recent
        busy = await e.submit("p/c", run_job)  # c runs until the gate opens
        before = {s["model"]: s for s in e.status()}

        first = await e.relieve(Pressure.WARNING)
        assert first == Relief(Pressure.WARNING, {"p/b": CACHE_BYTES, "p/a": CACHE_BYTES}, ())
        assert sorted(backend.drops) == [("a", "aigw-model-p/a"), ("b", "aigw-model-p/b")]  # owner threads
        assert busy_backend.drops == []  # a busy model's cache is in use
        after = {s["model"]: s for s in e.status()}
        for key in ("p/a", "p/b"):  # dropping a cache is no request and no use
            assert after[key]["requests"] == before[key]["requests"] == 1
            assert after[key]["unloads_in_s"] == before[key]["unloads_in_s"]
            assert after[key]["state"] == "idle"

        second = await e.relieve(Pressure.WARNING)  # nothing left to drop: the LRU idle model goes
        assert second.unloaded == ("p/b",) and not second.caches
        assert loaded(e) == ["p/a", "p/c"]
        assert (await e.relieve(Pressure.WARNING)).unloaded == ("p/a",)
        assert (await e.relieve(Pressure.WARNING)).unloaded == ()  # only the busy one is left
        assert (await e.relieve(Pressure.CRITICAL)).unloaded == ()
        assert loaded(e) == ["p/c"]
        gate.set()
        assert (await busy.wait()).text == "hi"
        assert (await e.relieve(Pressure.CRITICAL)).unloaded == ("p/c",)
        assert loaded(e) == []
        await e.aclose()

    asyncio.run(run())


def test_critical_unloads_every_idle_model_at_once_kept_loaded_ones_too() -> None:
    async def run() -> None:
        backend = CachingBackend()
        e, clock, _ = make(backend)
        await use(e, clock, "p/a", "p/b")
        await use(e, clock, "p/c", keep_alive_s=FOREVER)
        relief = await e.relieve(Pressure.CRITICAL)
        assert relief.unloaded == ("p/a", "p/b", "p/c") and not relief.caches  # no cache dropping first
        assert backend.drops == []
        assert loaded(e) == []
        await e.aclose()

    asyncio.run(run())


def test_a_warning_spares_models_kept_loaded_on_purpose() -> None:
    async def run() -> None:
        e, clock, _ = make(EchoBackend())  # models without a prompt cache: straight to unloading
        await use(e, clock, "p/a", keep_alive_s=FOREVER)
        await use(e, clock, "p/b")
        assert (await e.relieve(Pressure.WARNING)).unloaded == ("p/b",)
        assert (await e.relieve(Pressure.WARNING)).unloaded == ()
        assert loaded(e) == ["p/a"]
        await e.aclose()

    asyncio.run(run())


def test_a_failing_drop_cache_is_logged_and_the_round_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Echo):
        def drop_cache(self) -> int:
            raise RuntimeError("boom")

    class BrokenBackend(EchoBackend):
        def load(self, spec: ModelSpec) -> LoadedModel:
            return Broken(None)

    async def run() -> None:
        e, clock, _ = make(BrokenBackend())
        await use(e, clock, "p/a")
        with caplog.at_level(logging.WARNING, logger="aigw.local"):
            relief = await e.relieve(Pressure.WARNING)
        assert relief.unloaded == ("p/a",)
        assert "dropping the prompt cache of p/a failed" in caplog.text
        assert "memory pressure warning: unloaded idle p/a" in caplog.text
        await e.aclose()

    asyncio.run(run())


def test_the_engine_watches_pressure_and_unloads_idle_models_but_not_busy_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run() -> None:
        gate = threading.Event()
        e, clock, readings = make(CachingBackend(), CachingBackend(gate), pressure_poll_s=0.01)
        await use(e, clock, "p/a", "p/b")
        busy = await e.submit("p/c", run_job)
        await asyncio.sleep(0.05)
        assert loaded(e) == ["p/a", "p/b", "p/c"]  # normal pressure: nothing happens
        with caplog.at_level(logging.WARNING, logger="aigw.local"):
            readings.level = Pressure.CRITICAL
            for _ in range(200):
                if loaded(e) == ["p/c"]:
                    break
                await asyncio.sleep(0.01)
        assert loaded(e) == ["p/c"]
        assert "memory pressure critical: unloaded idle p/a, p/b" in caplog.text
        gate.set()
        await busy.wait()
        readings.level = Pressure.NORMAL
        await use(e, clock, "p/a")
        await asyncio.sleep(0.05)
        assert "p/a" in loaded(e)
        await e.aclose()

    asyncio.run(run())


def test_no_watch_when_polling_is_off() -> None:
    async def run() -> None:
        e, clock, readings = make(EchoBackend())
        readings.level = Pressure.CRITICAL
        await use(e, clock, "p/a")
        await asyncio.sleep(0.05)
        assert loaded(e) == ["p/a"]
        await e.aclose()

    asyncio.run(run())


def test_the_watch_lets_a_warning_settle_but_not_a_critical_level() -> None:
    async def run() -> None:
        clock, readings = Clock(), Readings()
        calls: list[Pressure] = []
        acted = True

        async def relieve(level: Pressure) -> Relief:
            calls.append(level)
            return Relief(level, unloaded=("x",) if acted else ())

        watch = PressureWatch(readings.facts().pressure, relieve, poll_s=2, settle_s=10, clock=clock)
        assert await watch.tick() is None  # normal
        readings.level = Pressure.WARNING
        assert await watch.tick() is not None
        clock.now += 2
        assert await watch.tick() is None  # settling: the last unload may not show yet
        readings.level = Pressure.CRITICAL
        assert await watch.tick() is not None  # critical does not wait
        readings.level = Pressure.WARNING
        clock.now += 10
        acted = False
        assert await watch.tick() is not None
        assert await watch.tick() is not None  # nothing was freed: no reason to wait
        assert calls == [Pressure.WARNING, Pressure.CRITICAL, Pressure.WARNING, Pressure.WARNING]

    asyncio.run(run())
