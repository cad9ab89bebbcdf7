"""The memory budget and memory pressure from faked platform facts (a fake Mac on this Linux)."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from aigw.config.model import LocalConfig
from aigw.engine.memory import (
    BudgetSource,
    GiB,
    Pressure,
    Sysctl,
    darwin_pressure,
    default_working_set,
    linux_pressure,
    read_meminfo,
    read_psi,
    real_memory_facts,
    suggested_wired_limit_mb,
)
from tests.fixtures.memory import fake_linux, fake_mac

# -- the budget ---------------------------------------------------------------------------------


def test_a_mac_gets_90_percent_of_metals_recommended_working_set() -> None:
    budget = LocalConfig().budget(fake_mac(ram_gb=64, working_set_gb=48))
    assert budget.source is BudgetSource.METAL
    assert budget.bytes == int(48 * GiB * 0.9)
    assert budget.gpu is not None and budget.gpu.bytes == 48 * GiB and not budget.gpu.wired
    assert budget.describe() == (
        "43.2 GiB = 90% of Metal's recommended working set; GPU limit 48.0 GiB of 64.0 GiB RAM"
    )
    assert LocalConfig().budget_bytes(fake_mac(ram_gb=64, working_set_gb=48)) == budget.bytes


def test_a_mac_with_the_wired_limit_set_gets_90_percent_of_it() -> None:
    budget = LocalConfig().budget(fake_mac(ram_gb=64, working_set_gb=48, wired_mb=56 * 1024))
    assert budget.source is BudgetSource.WIRED_LIMIT
    assert budget.bytes == int(56 * GiB * 0.9)
    assert "iogpu.wired_limit_mb=57344" in budget.describe()


def test_a_wired_limit_above_ram_counts_as_ram() -> None:
    budget = LocalConfig().budget(fake_mac(ram_gb=16, working_set_gb=10.7, wired_mb=64 * 1024))
    assert budget.gpu is not None and budget.gpu.bytes == 16 * GiB


def test_an_explicit_budget_always_wins() -> None:
    cfg = LocalConfig(memory_budget_gb=20)
    for facts in (fake_mac(), fake_mac(wired_mb=56 * 1024), fake_linux()):
        budget = cfg.budget(facts)
        assert budget.source is BudgetSource.CONFIG
        assert budget.bytes == 20 * GiB
        assert budget.describe().startswith("20.0 GiB from [local] memory_budget_gb")


def test_an_explicit_fraction_on_a_mac_is_a_share_of_ram() -> None:
    budget = LocalConfig(memory_fraction=0.5).budget(fake_mac(ram_gb=64, working_set_gb=48))
    assert budget.source is BudgetSource.RAM_FRACTION
    assert budget.bytes == 32 * GiB
    assert budget.gpu is not None  # doctor still compares it with the GPU's limit


def test_linux_gets_memory_fraction_of_ram() -> None:
    budget = LocalConfig().budget(fake_linux(ram_gb=32))
    assert budget.source is BudgetSource.RAM_FRACTION
    assert budget.bytes == int(32 * GiB * 0.6)
    assert budget.gpu is None
    assert budget.describe() == "19.2 GiB = memory_fraction 0.6 of 32.0 GiB RAM"


def test_a_mac_without_a_readable_gpu_limit_falls_back_to_ram() -> None:
    budget = LocalConfig().budget(fake_mac(working_set_gb=None))
    assert budget.source is BudgetSource.RAM_FRACTION


def test_macos_default_working_set_and_the_suggested_wired_limit() -> None:
    assert default_working_set(16 * GiB) == 16 * GiB * 2 // 3
    assert default_working_set(64 * GiB) == 48 * GiB
    assert suggested_wired_limit_mb(16 * GiB) == 12 * 1024  # 4 GiB left to macOS
    assert suggested_wired_limit_mb(64 * GiB) == 56 * 1024  # 1/8 left


def test_real_facts_here_are_linux_facts_and_need_no_mlx() -> None:
    if sys.platform == "darwin":
        pytest.skip("a Linux check")
    facts = real_memory_facts()
    assert not facts.apple_silicon
    assert facts.total_bytes() > 0
    assert facts.working_set_bytes() is None and facts.wired_limit_mb() is None
    assert isinstance(facts.pressure(), Pressure)
    assert LocalConfig().budget(facts).source is BudgetSource.RAM_FRACTION


# -- Linux pressure -----------------------------------------------------------------------------

PSI_QUIET = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"


def psi(some: float, full: float) -> str:
    return (
        f"some avg10={some:.2f} avg60=0.00 avg300=0.00 total=123\n"
        f"full avg10={full:.2f} avg60=0.00 avg300=0.00 total=45\n"
    )


def meminfo(total_kb: int, available_kb: int) -> str:
    return (
        f"MemTotal:       {total_kb} kB\nMemFree:          100000 kB\n"
        f"MemAvailable:   {available_kb} kB\nBuffers:           2000 kB\n"
    )


@pytest.mark.parametrize(
    ("psi_text", "mem_text", "level"),
    [
        (PSI_QUIET, meminfo(1_000_000, 600_000), Pressure.NORMAL),
        (psi(12.5, 0.0), meminfo(1_000_000, 600_000), Pressure.WARNING),
        (psi(55.0, 10.0), meminfo(1_000_000, 600_000), Pressure.CRITICAL),
        (PSI_QUIET, meminfo(1_000_000, 90_000), Pressure.WARNING),
        (PSI_QUIET, meminfo(1_000_000, 40_000), Pressure.CRITICAL),
        (psi(12.5, 0.0), meminfo(1_000_000, 40_000), Pressure.CRITICAL),
        (psi(9.99, 9.99), meminfo(1_000_000, 100_000), Pressure.NORMAL),
    ],
)
def test_linux_pressure_from_psi_and_meminfo(
    tmp_path: Path, psi_text: str, mem_text: str, level: Pressure
) -> None:
    (tmp_path / "psi").write_text(psi_text)
    (tmp_path / "meminfo").write_text(mem_text)
    assert linux_pressure(tmp_path / "psi", tmp_path / "meminfo") is level


def test_linux_pressure_without_psi_uses_meminfo_and_without_either_is_normal(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text(meminfo(1_000_000, 90_000))
    assert linux_pressure(tmp_path / "no-psi", tmp_path / "meminfo") is Pressure.WARNING
    assert linux_pressure(tmp_path / "no-psi", tmp_path / "no-meminfo") is Pressure.NORMAL
    (tmp_path / "psi").write_text(psi(20.0, 0.0))
    assert linux_pressure(tmp_path / "psi", tmp_path / "no-meminfo") is Pressure.WARNING


def test_psi_and_meminfo_parsing() -> None:
    assert read_psi(psi(1.5, 0.25)) == (1.5, 0.25)
    assert read_psi("some avg10=oops\n") == (0.0, 0.0)
    assert read_psi("") == (0.0, 0.0)
    assert read_meminfo(meminfo(2048, 1024)) == (2048 * 1024, 1024 * 1024)
    assert read_meminfo("MemTotal: 2048 kB\n") is None  # kernels before 3.14 have no MemAvailable


# -- macOS sysctls through a fake libc ----------------------------------------------------------

SYSCTL = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_size_t),
    ctypes.c_void_p,
    ctypes.c_size_t,
)


def fake_libc(values: dict[str, tuple[int, int]]) -> SimpleNamespace:
    """A libc whose sysctlbyname answers `values` (name -> (value, width in bytes)) through real
    ctypes marshalling, as the C function would: the value written into the caller's buffer."""

    def sysctlbyname(
        name: bytes, buf: int, size: ctypes._Pointer[ctypes.c_size_t], new: int, newlen: int
    ) -> int:
        if name.decode() not in values:
            return -1
        value, width = values[name.decode()]
        raw = value.to_bytes(width, sys.byteorder, signed=True)
        if size[0] < width:
            return -1
        ctypes.memmove(buf, raw, width)
        size[0] = width
        return 0

    return SimpleNamespace(sysctlbyname=SYSCTL(sysctlbyname))


def test_sysctl_reads_32_and_64_bit_integers() -> None:
    sysctl = Sysctl(fake_libc({"hw.memsize": (64 * GiB, 8), "iogpu.wired_limit_mb": (57344, 4)}))
    assert sysctl.read_int("hw.memsize") == 64 * GiB
    assert sysctl.read_int("iogpu.wired_limit_mb") == 57344
    assert sysctl.read_int("no.such.name") is None


@pytest.mark.parametrize(
    ("raw", "level"),
    [
        (1, Pressure.NORMAL),
        (2, Pressure.WARNING),
        (4, Pressure.CRITICAL),
        (3, Pressure.NORMAL),
        (None, Pressure.NORMAL),
    ],
)
def test_darwin_pressure_levels(raw: int | None, level: Pressure) -> None:
    values = {} if raw is None else {"kern.memorystatus_vm_pressure_level": (raw, 4)}
    assert darwin_pressure(Sysctl(fake_libc(values))) is level


def test_darwin_facts_from_sysctls_without_mlx(monkeypatch: pytest.MonkeyPatch) -> None:
    from aigw.engine import memory

    monkeypatch.setattr(memory, "mlx_working_set", lambda: None)  # as on a Mac without mlx installed
    sysctl = Sysctl(fake_libc({"hw.memsize": (16 * GiB, 8), "iogpu.wired_limit_mb": (0, 4)}))
    facts = memory._darwin_facts(sysctl, apple_silicon=True)
    assert facts.total_bytes() == 16 * GiB
    assert facts.wired_limit_mb() is None  # 0: not set
    assert facts.working_set_bytes() == 16 * GiB * 2 // 3
    budget = LocalConfig().budget(facts)
    assert budget.source is BudgetSource.METAL and budget.bytes == int(16 * GiB * 2 // 3 * 0.9)
    raised = Sysctl(fake_libc({"hw.memsize": (16 * GiB, 8), "iogpu.wired_limit_mb": (12288, 4)}))
    assert LocalConfig().budget(memory._darwin_facts(raised, apple_silicon=True)).bytes == int(12 * GiB * 0.9)
    intel = memory._darwin_facts(sysctl, apple_silicon=False)
    assert LocalConfig().budget(intel).source is BudgetSource.RAM_FRACTION


def test_mlx_without_metal_gives_no_working_set() -> None:
    pytest.importorskip("mlx.core", reason="needs the mlx extra")
    from aigw.engine.memory import mlx_working_set

    if sys.platform != "darwin":
        assert mlx_working_set() is None  # mlx on the CPU reports no Metal working set
