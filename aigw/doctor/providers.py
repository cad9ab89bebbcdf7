"""Each configured provider, as its type probes it: its key is there (never shown), its API answers,
its model files exist.

A provider type says how it is probed (`ProviderType.probe`): a GET that doctor sends and judges
here, or a verdict the type reaches by itself (a local type checks its model files). Network
probes run on daemon threads, all at once, and are waited for until one shared deadline: doctor
finishes in about `PROBE_DEADLINE_S` even when every provider hangs (a hung DNS lookup included)
and never waits for stragglers when it exits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from aigw.config import Config, redact_url
from aigw.doctor.checks import Check, fail, ok, warn
from aigw.doctor.facts import Facts, HttpResult
from aigw.errors import ConfigError
from aigw.providers.registry import ProviderRegistry
from aigw.providers.spec import HttpProbe, ProbeEnv, Verdict

HTTP_TIMEOUT_S = 2.0
PROBE_DEADLINE_S = 2.5


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

    cfg: Config | None
    probes: dict[str, HttpProbe | Verdict]
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
        out: list[Check] = []
        for name, pcfg in self.cfg.providers.items():
            probe = self.probes[name]
            if isinstance(probe, Verdict):
                out.append(Check(f"provider {name}", probe.status, probe.detail, probe.fix))
            else:
                out.append(_http_check(name, pcfg.type or name, probe, results.get(name)))
        return out


def start_provider_checks(f: Facts, cfg: Config | None, registry: ProviderRegistry) -> ProviderChecks:
    """Ask each provider's type how to probe it, and start every HTTP probe now, so they run while
    the other checks do."""
    probes: dict[str, HttpProbe | Verdict] = {}
    batch = ProbeBatch(f)
    env = ProbeEnv(
        environ=f.environ,
        paths=f.paths,
        find_spec=f.find_spec,
        from_file=(f.config_path or f.paths.config_file).exists(),
    )
    for name, pcfg in (cfg.providers if cfg is not None else {}).items():
        try:
            probe = registry.of(name, pcfg).probe(name, pcfg, env)
        except ConfigError as e:
            probe = Verdict("FAIL", e.message, "correct the config (`aigw config show` re-checks it)")
        probes[name] = probe
        if isinstance(probe, HttpProbe) and _sendable(probe):
            batch.start(name, probe.url, probe.headers)
    return ProviderChecks(cfg, probes, batch)


def _sendable(probe: HttpProbe) -> bool:
    """Worth sending: its key is usable, or it needs none."""
    return probe.key_error is None and (probe.key_present or not probe.key_expected)


def _http_check(provider: str, ptype: str, c: HttpProbe, result: HttpResult | None) -> Check:
    name = f"provider {provider}"
    at = f"{ptype} at {redact_url(c.base_url)}"
    table = f"[providers.{provider}]"
    if c.key_error is not None:
        return fail(name, f"{at}: {c.key_error}", f"set {c.key_where} again, without the stray character")
    if not c.key_present and c.key_expected:
        detail = f"{at}: no API key ({c.key_where} is not set)"
        fix = f"export {c.key_where.split(' or ')[0].lstrip('$')}=..., or set api_key under {table}"
        return fail(name, detail, fix) if c.official else warn(name, detail, fix)
    key = c.key_where if c.key_present else "no key"
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
        if c.key_present:
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
