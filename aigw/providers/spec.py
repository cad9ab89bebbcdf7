"""A provider TYPE: everything aigw knows about one kind of backend, in one object.

The `aigw.providers` entry-point group maps a type name (the `type` of a `[providers.NAME]` table)
to a `ProviderType` instance. Built-in types register through the same group a third-party plugin
would use, and nothing outside a type's own folder compares type or provider names: config
loading, `aigw doctor`, prices, `aigw models` and pulls ask the type.

A type says
  * how to create a provider from its table (`create`), and which keys that table takes
    (`config_model`, a subclass of `ProviderConfig`, so a plugin adds keys of its own);
  * what it checks in the environment (`check`), and which providers the environment alone sets
    up when there is no config file (`from_environment`);
  * how `aigw doctor` probes a provider of it (`probe`): an HTTP GET doctor runs and judges, or a
    verdict the type reaches by itself (local model files, say);
  * whether it runs on this machine (`is_local`: free unless `[prices]` says otherwise), and its
    vendor's published prices (`prices`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from aigw.config.model import LocalConfig, ProviderConfig
from aigw.domain import Price
from aigw.paths import Paths

if TYPE_CHECKING:
    from aigw.engine.engine import Engine
    from aigw.providers.base import Provider

C = TypeVar("C", bound=ProviderConfig)
Status = Literal["OK", "WARN", "FAIL"]


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What a type's `create` may use besides the provider's own table."""

    environ: Mapping[str, str]
    paths: Paths
    engine: Engine
    """The local engine every local provider shares (owned by the gateway)."""
    local: LocalConfig


@dataclass(frozen=True, slots=True)
class ProbeEnv:
    """What a doctor probe may look at (tests swap in any of it)."""

    environ: Mapping[str, str]
    paths: Paths
    find_spec: Callable[[str], object | None]
    """Whether a Python module is installed (importlib.util.find_spec, or a test's stand-in)."""
    from_file: bool
    """The config came from a file (not from the environment alone)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """A type's own judgement of a provider, without the network: one doctor line."""

    status: Status
    detail: str
    fix: str | None = None


@dataclass(frozen=True, slots=True)
class HttpProbe:
    """A GET that tells whether a provider reached over HTTP answers and accepts its key; doctor
    sends it (under one shared deadline) and judges the status. Never shown: `url` and `headers`
    may hold credentials; `base_url` is shown redacted."""

    base_url: str
    url: str = field(repr=False)
    headers: Mapping[str, str] = field(repr=False)
    key_present: bool
    key_where: str
    """Where the key came from ("key from $X"), or the variables looked at ("$X or $Y")."""
    key_expected: bool
    """The provider needs a key (the vendor's own API, or a key variable was named)."""
    official: bool
    """The base URL is the vendor's own: a missing or refused key is a failure, not a warning."""
    key_error: str | None = None
    """Why the key cannot be used (a control character in the variable)."""


class ProviderType(Generic[C]):
    """A kind of backend. Subclass it; override what applies. One instance per type, loaded from the
    `aigw.providers` entry-point group."""

    name: str = ""
    """The type name, as `type = "..."` in a provider table."""
    config_model: type[C]
    """The model validating this type's tables (a subclass of ProviderConfig)."""
    is_local: bool = False
    """Runs on this machine: its models cost nothing unless `[prices]` prices them."""

    def create(self, name: str, config: C, ctx: ProviderContext) -> Provider:
        """A provider named `name` from its validated table."""
        raise NotImplementedError

    def check(self, config: C, environ: Mapping[str, str]) -> None:
        """Raise ConfigError when the environment cannot serve this table (checked at startup)."""

    def from_environment(self, environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        """Provider tables this type sets up when there is no config file: name -> table."""
        return {}

    def has_credentials(self, config: C, environ: Mapping[str, str]) -> bool:
        """Whether a key (or other credential) for the provider is at hand (for /health/detailed)."""
        return False

    def probe(self, name: str, config: C, env: ProbeEnv) -> HttpProbe | Verdict:
        """How `aigw doctor` checks a provider of this type."""
        return Verdict("OK", f"{self.name}: a provider type without a probe")

    def prices(self) -> Mapping[str, Price]:
        """The vendor's published prices by model name (USD per million tokens)."""
        return {}


def packaged_prices(package: str, resource: str = "prices.toml") -> dict[str, Price]:
    """A `[models."NAME"] input = .. output = ..` table shipped inside a type's package."""
    text = resources.files(package).joinpath(resource).read_text(encoding="utf-8")
    models = tomllib.loads(text).get("models", {})
    return {name.lower(): Price(float(p["input"]), float(p["output"])) for name, p in models.items()}
