"""The memory local models may use: the budget in use and where it comes from, the GPU's limit on
Apple Silicon with the sysctl that raises it, and the system's memory pressure now."""

from __future__ import annotations

import math

from aigw.config import Config
from aigw.config.model import LocalConfig
from aigw.doctor.checks import Check, warn
from aigw.doctor.facts import Facts
from aigw.engine.memory import GPU_SHARE, Budget, GiB, MiB, Pressure, suggested_wired_limit_mb

NAME = "memory"


def check_memory(f: Facts, cfg: Config | None) -> Check:
    local = cfg.local if cfg is not None else LocalConfig()
    budget = local.budget(f.memory)
    pressure = f.memory.pressure()
    detail = f"local models may hold {budget.describe()}; memory pressure {pressure.name.lower()}"
    if budget.gpu is not None and budget.bytes > budget.gpu.bytes:
        return _over_gpu_limit(budget, detail)
    if pressure is not Pressure.NORMAL:
        return warn(
            NAME,
            detail,
            "close memory-hungry apps or lower [local] memory_budget_gb "
            "(the daemon unloads idle models under pressure)",
        )
    return Check(NAME, "OK", detail, _raise_hint(budget))


def _raise_hint(budget: Budget) -> str | None:
    """On Apple Silicon: the sysctl that lets the GPU (and so the default budget) use more."""
    if budget.gpu is None:
        return None
    n = suggested_wired_limit_mb(budget.total_bytes)
    if budget.gpu.wired:
        return (
            f"the GPU's limit is set by iogpu.wired_limit_mb: change it with `sudo sysctl "
            f"iogpu.wired_limit_mb=N` (e.g. {n}; 0 restores macOS's default), until restart"
        )
    if n * MiB <= budget.gpu.bytes:
        return None
    return f"to let the GPU use more memory: sudo sysctl iogpu.wired_limit_mb={n} (lasts until restart)"


def _over_gpu_limit(budget: Budget, detail: str) -> Check:
    assert budget.gpu is not None
    fits = f"lower [local] memory_budget_gb to {budget.gpu.bytes * GPU_SHARE / GiB:.1f}"
    need_mb = math.ceil(budget.bytes / GPU_SHARE / MiB)
    total_mb = budget.total_bytes // MiB
    if need_mb < total_mb:
        n = max(need_mb, suggested_wired_limit_mb(budget.total_bytes))
        fits += f", or raise the GPU's limit: sudo sysctl iogpu.wired_limit_mb={min(n, total_mb)}"
    return warn(
        NAME,
        f"{detail}; the budget is over what the GPU may use: models beyond it page instead of running",
        fits,
    )
