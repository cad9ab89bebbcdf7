"""Each configured provider: its key is there (never shown), its API answers, its model files exist.

Network probes run on daemon threads, all at once, and are waited for until one shared
deadline: doctor finishes in about `PROBE_DEADLINE_S` even when every provider hangs (a hung
DNS lookup included) and never waits for stragglers when it exits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from aigw.config import (
    DEFAULT_OPENAI_BASE_URL,
    ENV_PROVIDERS,
    Config,
    LocalModelConfig,
    ProviderConfig,
    redact_url,
)
from aigw.doctor.checks import LOCAL_EXTRA, MLX_EXTRA, Check, fail, ok, warn
from aigw.doctor.facts import Facts, HttpResult
from aigw.errors import ConfigError

HTTP_TIMEOUT_S = 2.0
PROBE_DEADLINE_S = 2.5
LOCAL_TYPES = frozenset({"llama_cpp", "mlx"})
_MAX_LISTED = 3


@dataclass(frozen=True, slots=True)
class Cloud:
    """What doctor needs to know about a provider reached over HTTP."""

    name: str
    ptype: str
    base_url: str
    key: str | None = field(repr=False)
    key_where: str
    key_expected: bool
    key_error: str | None
    url: str
    headers: Mapping[str, str] = field(repr=False)


def _defaults(ptype: str) -> str | None:
    if ptype == "openai":
        return DEFAULT_OPENAI_BASE_URL
    if ptype == "anthropic":
        from aigw.providers.anthropic.provider import DEFAULT_BASE_URL

        return DEFAULT_BASE_URL
    if ptype == "gemini":
        from aigw.providers.gemini.provider import DEFAULT_GEMINI_BASE_URL

        return DEFAULT_GEMINI_BASE_URL
    return None


def _key(p: ProviderConfig, ptype: str, environ: Mapping[str, str]) -> tuple[str | None, str, str | None]:
    """The key (to send, never to show), where it comes from or was looked for, and any problem."""
    if p.api_key is not None:
        return p.api_key.get_secret_value(), "key set in the config", None
    if p.api_key_env:
        candidates: tuple[str, ...] = (p.api_key_env,)
    elif ptype in ("anthropic", "gemini"):
        candidates = ENV_PROVIDERS[ptype]
    else:
        candidates = ()
    for var in candidates:
        try:
            value = p.model_copy(update={"api_key_env": var}).api_key_value(environ)
        except ConfigError as e:
            return None, f"${var}", e.message
        if value is not None:
            return value.get_secret_value(), f"key from ${var}", None
    return None, " or ".join(f"${v}" for v in candidates), None


def _cloud(name: str, p: ProviderConfig, ptype: str, environ: Mapping[str, str]) -> Cloud | None:
    default = _defaults(ptype)
    base = p.base_url or default
    if base is None:
        return None  # a plugin type with no URL of its own to try
    base = base.rstrip("/")
    key, where, key_error = _key(p, ptype, environ)
    headers = {h: v.get_secret_value() for h, v in p.headers.items()}
    url = f"{base}/models"
    if ptype == "anthropic":
        url += "?limit=1"
        from aigw.providers.anthropic.wire import API_VERSION

        headers["anthropic-version"] = API_VERSION
        if key is not None:
            headers["x-api-key"] = key
    elif ptype == "gemini":
        url += "?pageSize=1"
        if key is not None:
            headers["x-goog-api-key"] = key
    elif ptype == "openai" and key is not None:
        headers["Authorization"] = f"Bearer {key}"
    official = default is not None and urlsplit(base).hostname == urlsplit(default).hostname
    expected = ptype in ("anthropic", "gemini") or official or bool(p.api_key_env)
    return Cloud(name, ptype, base, key, where, expected, key_error, url, headers)


@dataclass
class ProbeBatch:
    """GETs running on daemon threads; `results()` waits for them until the deadline at most."""

    facts: Facts
    started: float = 0.0
    _results: dict[str, HttpResult] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, key: str, url: str, headers: Mapping[str, str]) -> None:
        if not self._threads:
            self.started = time.monotonic()

        def run() -> None:
            try:
                result = self.facts.http_get(url, headers, HTTP_TIMEOUT_S)
            except Exception as e:
                result = HttpResult(error=f"cannot connect: {type(e).__name__}")
            with self._lock:
                self._results[key] = result

        thread = threading.Thread(target=run, name=f"aigw-doctor-{key}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def results(self) -> dict[str, HttpResult]:
        deadline = self.started + PROBE_DEADLINE_S
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            return dict(self._results)


@dataclass
class ProviderChecks:
    """Started by `start_provider_checks`; `finish()` gives one check per provider."""

    facts: Facts
    cfg: Config | None
    clouds: dict[str, Cloud]
    batch: ProbeBatch

    def finish(self) -> list[Check]:
        if self.cfg is None:
            return [warn("providers", "not checked: the config has errors", "correct the config first")]
        if not self.cfg.providers:
            return [
                warn(
                    "providers",
                    "none configured",
                    "set OPENAI_API_KEY (or ANTHROPIC_API_KEY, GEMINI_API_KEY), add [providers.NAME] "
                    "to config.toml, or `aigw models pull NAME`",
                )
            ]
        results = self.batch.results()
        from_file = (self.facts.config_path or self.facts.paths.config_file).exists()
        out: list[Check] = []
        for name, p in self.cfg.providers.items():
            ptype = p.type or name
            cloud = self.clouds.get(name)
            if ptype in LOCAL_TYPES:
                out.append(_local_check(self.facts, name, p, ptype, from_file))
            elif cloud is None:
                out.append(ok(f"provider {name}", f"{ptype}: a plugin type doctor cannot probe"))
            else:
                out.append(_cloud_check(cloud, results.get(name)))
        return out


def start_provider_checks(f: Facts, cfg: Config | None) -> ProviderChecks:
    """Start every provider's HTTP probe now, so they run while the other checks do."""
    clouds: dict[str, Cloud] = {}
    batch = ProbeBatch(f)
    for name, p in (cfg.providers if cfg is not None else {}).items():
        ptype = p.type or name
        if ptype in LOCAL_TYPES:
            continue
        cloud = _cloud(name, p, ptype, f.environ)
        if cloud is None:
            continue
        clouds[name] = cloud
        if cloud.key_error is None and (cloud.key is not None or not cloud.key_expected):
            batch.start(name, cloud.url, cloud.headers)
    return ProviderChecks(f, cfg, clouds, batch)


def _cloud_check(c: Cloud, result: HttpResult | None) -> Check:
    name = f"provider {c.name}"
    at = f"{c.ptype} at {redact_url(c.base_url)}"
    table = f"[providers.{c.name}]"
    if c.key_error is not None:
        return fail(name, f"{at}: {c.key_error}", f"set {c.key_where} again, without the stray character")
    if c.key is None and c.key_expected:
        detail = f"{at}: no API key ({c.key_where} is not set)"
        fix = f"export {c.key_where.split(' or ')[0].lstrip('$')}=..., or set api_key under {table}"
        return fail(name, detail, fix) if _official(c) else warn(name, detail, fix)
    key = c.key_where if c.key is not None else "no key"
    if result is None:
        return warn(
            name,
            f"{at} ({key}): no answer within {PROBE_DEADLINE_S:g} s",
            "check the network and base_url; requests fall back to an alias's other targets meanwhile",
        )
    if result.status is None:
        return warn(
            name,
            f"{at} ({key}): unreachable, {result.error}",
            "check the network and base_url; requests fall back to an alias's other targets meanwhile",
        )
    status = result.status
    if 200 <= status < 300:
        return ok(name, f"{at} ({key}): reachable")
    if status in (401, 403):
        if c.key is not None:
            return fail(name, f"{at}: the key was refused (HTTP {status})", f"replace the {c.key_where}")
        return warn(
            name, f"{at}: needs an API key (HTTP {status})", f"set api_key_env or api_key under {table}"
        )
    if status == 404:
        return warn(
            name,
            f"{at} ({key}): reachable, but GET /models answered 404",
            f"check base_url under {table} (OpenAI-compatible servers usually end in /v1)",
        )
    return warn(
        name,
        f"{at} ({key}): reachable, but answered HTTP {status}",
        "try again later; check the provider's status",
    )


def _official(c: Cloud) -> bool:
    default = _defaults(c.ptype)
    return default is not None and urlsplit(c.base_url).hostname == urlsplit(default).hostname


def _model_ok(ptype: str, path: Path) -> bool:
    if ptype == "mlx":
        from aigw.local.mlx.backend import is_mlx_dir

        return path.is_dir() and is_mlx_dir(path)
    return path.is_file()


def _discovered(ptype: str, models_dir: Path) -> int:
    if not models_dir.is_dir():
        return 0
    if ptype == "mlx":
        from aigw.local.mlx.backend import is_mlx_dir

        return sum(1 for d in models_dir.iterdir() if d.is_dir() and is_mlx_dir(d))
    return sum(1 for _ in models_dir.glob("*.gguf"))


def _local_check(f: Facts, name: str, p: ProviderConfig, ptype: str, from_file: bool) -> Check:
    check_name = f"provider {name}"
    module, extra = ("mlx_lm", MLX_EXTRA) if ptype == "mlx" else ("llama_cpp", LOCAL_EXTRA)
    if f.find_spec(module) is None:
        return fail(check_name, f"{ptype}: {module} is not installed", extra)
    models = p.models if isinstance(p.models, dict) else {}
    missing: list[str] = []
    for model, entry in models.items():
        raw = entry.path if isinstance(entry, LocalModelConfig) else entry
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = f.paths.models_dir / path
        if not _model_ok(ptype, path):
            missing.append(f"{model} ({path})")
    if missing:
        shown = ", ".join(missing[:_MAX_LISTED]) + (
            f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        )
        kind = "model directory" if ptype == "mlx" else "model file"
        return fail(
            check_name,
            f"{ptype}: {kind} not found: {shown}",
            f"correct the path under [providers.{name}] models, or fetch it with `aigw models pull NAME`",
        )
    found = _discovered(ptype, f.paths.models_dir) if p.discover_models else 0
    total = len(models) + found
    if total == 0:
        detail = f"{ptype}: no models yet"
        fix = "`aigw models pull NAME` fetches one (`aigw models list` shows the catalog)"
        return warn(check_name, detail, fix) if from_file else ok(check_name, f"{detail}; {fix}")
    parts = []
    if models:
        parts.append(f"{len(models)} configured, files present")
    if found:
        parts.append(f"{found} in the models dir")
    return ok(check_name, f"{ptype}: " + "; ".join(parts))
