"""aigw doctor's memory line: the local models' budget and its source, the GPU's limit and the sysctl
that raises it on Apple Silicon, memory pressure; faked facts for a Mac and for Linux."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from aigw.cli.doctor_cmd import render
from aigw.config import Config
from aigw.config.model import LocalConfig
from aigw.doctor import run_checks
from aigw.doctor.memory import check_memory
from aigw.engine.memory import Pressure
from tests.doctor.test_doctor import by_name, fake_facts
from tests.fixtures.memory import fake_linux, fake_mac


def config(**local: float) -> Config:
    return Config(local=LocalConfig(**local))


def test_a_mac_shows_metals_working_set_and_the_sysctl_that_raises_it(home: Path) -> None:
    f = fake_facts(home, system="Darwin", machine="arm64", memory=fake_mac(ram_gb=64, working_set_gb=48))
    c = check_memory(f, None)
    assert c.status == "OK"
    assert c.detail == (
        "local models may hold 43.2 GiB = 90% of Metal's recommended working set; "
        "GPU limit 48.0 GiB of 64.0 GiB RAM; memory pressure normal"
    )
    assert (
        c.fix
        == "to let the GPU use more memory: sudo sysctl iogpu.wired_limit_mb=57344 (lasts until restart)"
    )


def test_a_mac_with_the_wired_limit_set(home: Path) -> None:
    f = fake_facts(home, memory=fake_mac(ram_gb=64, working_set_gb=48, wired_mb=60 * 1024))
    c = check_memory(f, None)
    assert c.status == "OK"
    assert "54.0 GiB = 90% of the GPU wired limit (iogpu.wired_limit_mb)" in c.detail
    assert "iogpu.wired_limit_mb=61440" in c.detail
    assert c.fix is not None and "sudo sysctl iogpu.wired_limit_mb=N" in c.fix and "0 restores" in c.fix


def test_a_mac_config_budget_over_the_gpu_limit_warns(home: Path) -> None:
    f = fake_facts(home, memory=fake_mac(ram_gb=64, working_set_gb=48))
    c = check_memory(f, config(memory_budget_gb=56))
    assert c.status == "WARN"
    assert c.detail.startswith(
        "local models may hold 56.0 GiB from [local] memory_budget_gb; GPU limit 48.0 GiB"
    )
    assert "over what the GPU may use" in c.detail
    assert c.fix == (
        "lower [local] memory_budget_gb to 43.2, or raise the GPU's limit: "
        "sudo sysctl iogpu.wired_limit_mb=63716"
    )
    within = check_memory(f, config(memory_budget_gb=40))
    assert within.status == "OK" and "40.0 GiB from [local] memory_budget_gb" in within.detail


def test_a_budget_beyond_ram_is_only_told_to_shrink(home: Path) -> None:
    f = fake_facts(home, memory=fake_mac(ram_gb=16, working_set_gb=10.7))
    c = check_memory(f, config(memory_budget_gb=15.5))
    assert c.status == "WARN" and c.fix == "lower [local] memory_budget_gb to 9.6"


def test_linux_shows_the_ram_fraction_and_no_sysctl(home: Path) -> None:
    f = fake_facts(home, memory=fake_linux(ram_gb=32))
    c = check_memory(f, None)
    assert (c.status, c.fix) == ("OK", None)
    assert (
        c.detail
        == "local models may hold 19.2 GiB = memory_fraction 0.6 of 32.0 GiB RAM; memory pressure normal"
    )
    assert check_memory(f, config(memory_fraction=0.25)).detail.startswith("local models may hold 8.0 GiB")


def test_memory_pressure_now_warns(home: Path) -> None:
    for facts in (fake_linux(pressure=Pressure.WARNING), fake_mac(pressure=Pressure.CRITICAL)):
        c = check_memory(fake_facts(home, memory=facts), None)
        assert c.status == "WARN" and ("memory pressure warning" in c.detail or "critical" in c.detail)
        assert c.fix is not None and "unloads idle models under pressure" in c.fix


def test_the_memory_line_is_in_doctors_output(home: Path) -> None:
    f = fake_facts(home, system="Darwin", machine="arm64", memory=fake_mac(ram_gb=32, working_set_gb=21.3))
    checks = run_checks(f)
    assert by_name(checks)["memory"].status == "OK"
    names = [c.name for c in checks]
    assert names.index("mlx") + 1 == names.index("memory")
    text = render(checks, color=False)
    assert (
        "memory" in text
        and "fix: to let the GPU use more memory: sudo sysctl iogpu.wired_limit_mb=28672" in text
    )
    linux = render(run_checks(dataclasses.replace(f, system="Linux", memory=fake_linux())), color=False)
    assert "memory_fraction 0.6 of 32.0 GiB RAM" in linux and "sysctl" not in linux
