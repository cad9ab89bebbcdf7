"""How much memory local models may hold, and how hard the system is pressed for memory.

Everything the engine and `aigw doctor` learn about the machine's memory comes through one
injectable `MemoryFacts` (callables, read when needed), so tests fake a Mac on Linux:

    facts = real_memory_facts()
    budget = derive_budget(facts, explicit_gb=None, fraction=0.6, fraction_set=False)

The default budget (no `[local] memory_budget_gb`):

* Apple Silicon: `GPU_SHARE` (90 %) of what the GPU may use. That limit is the
  `iogpu.wired_limit_mb` sysctl when someone set it (it raises or lowers what Metal may wire),
  otherwise Metal's recommended working-set size (`max_recommended_working_set_size` from
  mlx's `device_info()` when mlx is installed; else `default_working_set` of `hw.memsize`, the
  share macOS gives the GPU by default). Models beyond that limit page instead of running from
  unified memory, so a fraction of RAM is the wrong measure there. The 10 % left over is for
  what a model's size estimate does not count (Metal's scratch buffers, activations).
* Elsewhere: `memory_fraction` of RAM (0.6 unless set).

An explicit `memory_budget_gb` always wins; an explicit `memory_fraction` wins on a Mac too
(a share of RAM, as the key says; `aigw doctor` warns when that exceeds the GPU's limit).

Memory pressure (`Pressure`, macOS's own levels) is read cheaply enough to poll every couple of
seconds: on macOS the `kern.memorystatus_vm_pressure_level` sysctl through `sysctlbyname`
(ctypes, no process), on Linux /proc/pressure/memory and /proc/meminfo (see `linux_pressure`).
Heavy imports (mlx) happen only on Apple Silicon, and only when the working set is asked for.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, IntEnum
from pathlib import Path
from typing import Any

log = logging.getLogger("aigw.local")

GiB = 1024**3
MiB = 1024**2
GPU_SHARE = 0.9
"""The share of the GPU's limit (Apple Silicon) that loaded models get by default."""
SMALL_MAC_BYTES = 36 * GiB
"""Up to this much RAM macOS lets the GPU use about 2/3 of it by default; above, about 3/4."""

# Linux thresholds. PSI's `some avg10` is the share of the last 10 s in which at least one task
# waited for memory (reclaim, swap-in); `full avg10` the share in which every runnable task did.
# A healthy machine reads 0.00. MemAvailable is the kernel's estimate of what can be had without
# swapping; it runs low before PSI rises, which is the moment to act ("before swapping").
PSI_SOME_WARNING = 10.0
"""% of the last 10 s with some task stalled on memory: warning."""
PSI_FULL_CRITICAL = 10.0
"""% of the last 10 s with every task stalled on memory: critical."""
AVAILABLE_WARNING = 0.10
"""MemAvailable below this share of MemTotal: warning."""
AVAILABLE_CRITICAL = 0.05
"""MemAvailable below this share of MemTotal: critical."""
PROC_PSI = Path("/proc/pressure/memory")
PROC_MEMINFO = Path("/proc/meminfo")


class Pressure(IntEnum):
    """The system's memory pressure; the values are macOS's own (kern.memorystatus_vm_pressure_level)."""

    NORMAL = 1
    WARNING = 2
    """Memory is getting short: swapping (macOS: compression, then swap) is near."""
    CRITICAL = 4
    """The system is swapping or about to: give back everything that can be given."""


class BudgetSource(Enum):
    """Where the memory budget came from (what `aigw doctor` shows)."""

    CONFIG = "[local] memory_budget_gb"
    WIRED_LIMIT = "the GPU wired limit (iogpu.wired_limit_mb)"
    METAL = "Metal's recommended working set"
    RAM_FRACTION = "memory_fraction of RAM"


@dataclass(frozen=True, slots=True)
class MemoryFacts:
    """The machine's memory, as callables read when needed (tests pass fakes)."""

    apple_silicon: bool
    """macOS on arm64 (a Python under Rosetta is not: it has no Metal)."""
    total_bytes: Callable[[], int]
    working_set_bytes: Callable[[], int | None]
    """Metal's recommended working-set size; None off Apple Silicon."""
    wired_limit_mb: Callable[[], int | None]
    """The `iogpu.wired_limit_mb` sysctl when set (> 0); None when unset or off Apple Silicon."""
    pressure: Callable[[], Pressure]


@dataclass(frozen=True, slots=True)
class GpuLimit:
    """What the GPU may use on Apple Silicon, and which setting says so."""

    bytes: int
    wired: bool
    """True: the iogpu.wired_limit_mb sysctl; False: Metal's recommended working set."""


@dataclass(frozen=True, slots=True)
class Budget:
    bytes: int
    source: BudgetSource
    total_bytes: int
    gpu: GpuLimit | None
    """Apple Silicon: the GPU's limit (whatever the source of the budget); None elsewhere."""
    share: float | None = None
    """The share applied: of the GPU's limit (WIRED_LIMIT, METAL) or of RAM (RAM_FRACTION)."""

    def describe(self) -> str:
        """One line: the budget and where it comes from."""
        ram = f"{self.total_bytes / GiB:.1f} GiB RAM"
        head = f"{self.bytes / GiB:.1f} GiB"
        if self.source is BudgetSource.CONFIG:
            where = f"{head} from {self.source.value}"
        elif self.source is BudgetSource.RAM_FRACTION:
            where = f"{head} = memory_fraction {self.share:g} of {ram}"
        else:
            where = f"{head} = {_percent(self.share)} of {self.source.value}"
        if self.gpu is None:
            return where
        limit = f"GPU limit {self.gpu.bytes / GiB:.1f} GiB"
        if self.gpu.wired:
            limit += f" (iogpu.wired_limit_mb={self.gpu.bytes // MiB})"
        elif self.source is not BudgetSource.METAL:
            limit += " (Metal's recommended working set)"
        return f"{where}; {limit} of {ram}"


def _percent(share: float | None) -> str:
    return f"{(share or 0) * 100:.0f}%"


def gpu_limit(facts: MemoryFacts) -> GpuLimit | None:
    """What the GPU may use (Apple Silicon only): the wired limit when set, else the working set."""
    if not facts.apple_silicon:
        return None
    wired = facts.wired_limit_mb()
    if wired is not None and wired > 0:
        return GpuLimit(min(wired * MiB, facts.total_bytes()), wired=True)
    working = facts.working_set_bytes()
    if working is not None and working > 0:
        return GpuLimit(working, wired=False)
    return None


def derive_budget(
    facts: MemoryFacts, *, explicit_gb: float | None, fraction: float, fraction_set: bool
) -> Budget:
    """The memory budget for loaded models (see the module's docstring for the rules)."""
    total = facts.total_bytes()
    gpu = gpu_limit(facts)
    if explicit_gb is not None:
        return Budget(int(explicit_gb * GiB), BudgetSource.CONFIG, total, gpu)
    if gpu is None or fraction_set:
        return Budget(int(total * fraction), BudgetSource.RAM_FRACTION, total, gpu, share=fraction)
    source = BudgetSource.WIRED_LIMIT if gpu.wired else BudgetSource.METAL
    return Budget(int(gpu.bytes * GPU_SHARE), source, total, gpu, share=GPU_SHARE)


def default_working_set(total_bytes: int) -> int:
    """Metal's recommended working set as macOS sets it by default: 2/3 of RAM up to 36 GiB, 3/4 above."""
    return total_bytes * 2 // 3 if total_bytes <= SMALL_MAC_BYTES else total_bytes * 3 // 4


def suggested_wired_limit_mb(total_bytes: int) -> int:
    """A GPU wired limit worth suggesting: RAM less max(4 GiB, 1/8 of it) for macOS and apps."""
    return (total_bytes - max(4 * GiB, total_bytes // 8)) // MiB


# -- reading the platform -------------------------------------------------------------------------


class Sysctl:
    """`sysctlbyname(3)` from libc through ctypes (macOS): a read costs microseconds, no process.

    `libc` is anything with a `sysctlbyname` callable (tests pass a fake); by default the C
    library this process already links.
    """

    _WIDTH = 8

    def __init__(self, libc: Any | None = None) -> None:
        lib = libc if libc is not None else ctypes.CDLL(None, use_errno=True)
        self._call = lib.sysctlbyname
        if libc is None:
            self._call.argtypes = [
                ctypes.c_char_p,
                ctypes.c_void_p,
                ctypes.POINTER(ctypes.c_size_t),
                ctypes.c_void_p,
                ctypes.c_size_t,
            ]
            self._call.restype = ctypes.c_int

    def read_int(self, name: str) -> int | None:
        """An integer sysctl (32 or 64 bits, native byte order); None when it does not exist."""
        buf = ctypes.create_string_buffer(self._WIDTH)
        size = ctypes.c_size_t(self._WIDTH)
        try:
            rc = self._call(name.encode("ascii"), buf, ctypes.byref(size), None, 0)
        except (OSError, ctypes.ArgumentError):
            return None
        if rc != 0 or not 0 < size.value <= self._WIDTH:
            return None
        return int.from_bytes(buf.raw[: size.value], sys.byteorder, signed=True)


def darwin_pressure(sysctl: Sysctl) -> Pressure:
    """macOS's own verdict: kern.memorystatus_vm_pressure_level (1 normal, 2 warning, 4 critical)."""
    level = sysctl.read_int("kern.memorystatus_vm_pressure_level")
    try:
        return Pressure(level) if level is not None else Pressure.NORMAL
    except ValueError:
        return Pressure.NORMAL


def read_psi(text: str) -> tuple[float, float]:
    """(some avg10, full avg10) from /proc/pressure/memory's text; a missing line reads 0."""
    found = {"some": 0.0, "full": 0.0}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        for field in rest.split():
            key, _, value = field.partition("=")
            if key == "avg10" and kind in found:
                with contextlib.suppress(ValueError):
                    found[kind] = float(value)
    return found["some"], found["full"]


def read_meminfo(text: str) -> tuple[int, int] | None:
    """(MemTotal, MemAvailable) in bytes from /proc/meminfo's text; None without both."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if key in ("MemTotal", "MemAvailable") and parts and parts[0].isdigit():
            values[key] = int(parts[0]) * 1024  # always kB
    if "MemTotal" not in values or "MemAvailable" not in values or values["MemTotal"] <= 0:
        return None
    return values["MemTotal"], values["MemAvailable"]


def linux_pressure(psi: Path = PROC_PSI, meminfo: Path = PROC_MEMINFO) -> Pressure:
    """The worse of two signals: PSI stalls (when the kernel has PSI) and MemAvailable's share.

    warning: `some avg10` >= PSI_SOME_WARNING, or MemAvailable < AVAILABLE_WARNING of MemTotal;
    critical: `full avg10` >= PSI_FULL_CRITICAL, or MemAvailable < AVAILABLE_CRITICAL. A file that
    cannot be read (no PSI in this kernel, not Linux) counts as no pressure.
    """
    level = Pressure.NORMAL
    try:
        some, full = read_psi(psi.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError):
        some = full = 0.0
    if full >= PSI_FULL_CRITICAL:
        return Pressure.CRITICAL
    if some >= PSI_SOME_WARNING:
        level = Pressure.WARNING
    try:
        mem = read_meminfo(meminfo.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError):
        mem = None
    if mem is not None:
        total, available = mem
        if available < total * AVAILABLE_CRITICAL:
            return Pressure.CRITICAL
        if available < total * AVAILABLE_WARNING:
            level = Pressure.WARNING
    return level


def sysconf_total() -> int:
    """Physical memory in bytes (POSIX sysconf)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def mlx_working_set() -> int | None:
    """Metal's max_recommended_working_set_size from mlx (imports mlx: call on Apple Silicon only)."""
    from importlib.util import find_spec

    try:
        if find_spec("mlx") is None:
            return None
        import mlx.core as mx

        info = getattr(mx, "device_info", None) or mx.metal.device_info  # device_info: mlx >= 0.29
        size = info().get("max_recommended_working_set_size")
    except Exception as e:  # a broken or GPU-less mlx: fall back to the sysctl estimate
        log.debug("mlx device_info failed: %s: %s", type(e).__name__, e)
        return None
    return size if isinstance(size, int) and size > 0 else None


def _nothing() -> None:
    return None


def _darwin_facts(sysctl: Sysctl, apple_silicon: bool) -> MemoryFacts:
    def total() -> int:
        return sysctl.read_int("hw.memsize") or sysconf_total()

    def working_set() -> int | None:
        return mlx_working_set() or default_working_set(total())

    def wired_limit() -> int | None:
        mb = sysctl.read_int("iogpu.wired_limit_mb")  # 0: not set, macOS's default applies
        return mb if mb is not None and mb > 0 else None

    return MemoryFacts(
        apple_silicon=apple_silicon,
        total_bytes=total,
        working_set_bytes=working_set if apple_silicon else _nothing,
        wired_limit_mb=wired_limit if apple_silicon else _nothing,
        pressure=lambda: darwin_pressure(sysctl),
    )


def real_memory_facts() -> MemoryFacts:
    """This machine's facts. Nothing is read (and mlx is not imported) until a callable is called."""
    if sys.platform == "darwin":
        return _darwin_facts(Sysctl(), apple_silicon=platform.machine() == "arm64")
    return MemoryFacts(
        apple_silicon=False,
        total_bytes=sysconf_total,
        working_set_bytes=_nothing,
        wired_limit_mb=_nothing,
        pressure=linux_pressure,
    )
