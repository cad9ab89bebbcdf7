"""`aigw doctor`: is this machine ready to run aigw? A list of checks, each OK, WARN or FAIL.

    from aigw.doctor import real_facts, run_checks
    checks = run_checks(real_facts(Paths.from_env(), None, os.environ))

Checks are pure functions of `Facts` (facts.py: the platform, modules, and probes for ports,
HTTP and disks), so tests swap in any platform. Modules: checks (platform, Python, llama.cpp,
MLX, SQLite, disk, RAG), memory (the local models' budget, the GPU's limit, memory pressure),
config_checks (config file, port), providers (keys, reachability, local model files). Secrets
never appear in a check: every key and header value the config or environment holds is masked
in the results as a last line of defence.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from pydantic import SecretStr

from aigw.config import Config
from aigw.doctor.checks import (
    Check,
    Status,
    check_llama,
    check_mlx,
    check_models_dir,
    check_platform,
    check_python,
    check_rag,
    check_sqlite,
    check_state,
    check_telemetry,
)
from aigw.doctor.config_checks import check_config, check_port
from aigw.doctor.facts import Facts, real_facts
from aigw.doctor.memory import check_memory
from aigw.doctor.providers import start_provider_checks
from aigw.providers.registry import ProviderRegistry

__all__ = ["Check", "Facts", "Status", "all_ok", "real_facts", "run_checks"]

_MIN_SECRET_LEN = 6
_MASK = "****"


def run_checks(f: Facts, registry: ProviderRegistry | None = None) -> list[Check]:
    """Every check, in the order they are shown. Provider probes run while the rest do."""
    registry = registry or ProviderRegistry.from_entry_points()
    config, cfg = check_config(f, registry)
    providers = start_provider_checks(f, cfg, registry)
    checks = [
        check_platform(f),
        check_python(f),
        check_llama(f),
        check_mlx(f),
        check_memory(f, cfg),
        *check_sqlite(f),
        check_port(f, cfg),
        config,
        *providers.finish(),
        check_models_dir(f),
        check_rag(f, cfg),
        *check_telemetry(f, cfg),
        *check_state(f, cfg),
    ]
    return _masked(checks, _secrets(f, cfg))


def all_ok(checks: Iterable[Check]) -> bool:
    """True when nothing failed (warnings allowed): doctor's exit status 0."""
    return all(c.status != "FAIL" for c in checks)


def _secrets(f: Facts, cfg: Config | None) -> set[str]:
    """Every value that must never be shown: secret-looking environment variables, and in each
    provider table (of whatever type) its secrets and the variables its `*_env` keys name."""
    found = {v for k, v in f.environ.items() if k.upper().endswith(("_API_KEY", "_TOKEN", "_SECRET"))}
    for p in cfg.providers.values() if cfg is not None else ():
        for key, value in p:
            found.update(_secret_values(value))
            if key.endswith("_env") and isinstance(value, str):
                found.add(f.environ.get(value, ""))
    return {s.strip() for s in found if len(s.strip()) >= _MIN_SECRET_LEN}


def _secret_values(value: object) -> list[str]:
    if isinstance(value, SecretStr):
        return [value.get_secret_value()]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _secret_values(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _secret_values(v)]
    return []


def _masked(checks: list[Check], secrets: set[str]) -> list[Check]:
    if not secrets:
        return checks
    ordered = sorted(secrets, key=len, reverse=True)

    def mask(text: str | None) -> str | None:
        if text is None:
            return None
        for s in ordered:
            text = text.replace(s, _MASK)
        return text

    return [dataclasses.replace(c, detail=mask(c.detail) or "", fix=mask(c.fix)) for c in checks]
