"""Loading the configuration: `config.toml`, or with no file the environment, checked against the
provider types that exist.

Unknown keys and wrong types raise `ConfigError` with one line naming the file and the key. Each
`[providers.NAME]` table is validated by its type's own config model, so a plugin's keys are
checked like a built-in's; which types exist, and which providers the environment configures when
there is no file, come from the registry (`TypeSource`). Secrets are `SecretStr`: printing or
dumping a config never reveals them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError

from aigw.config.model import Config, ProviderConfig
from aigw.errors import ConfigError


class TypeSource(Protocol):
    """What loading needs to know about provider types (`ProviderRegistry` provides it)."""

    def names(self) -> frozenset[str]: ...

    def config_model(self, ptype: str) -> type[ProviderConfig]:
        """The type's config model; ConfigError when the type cannot be loaded."""
        ...

    def environment_providers(self, environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        """Provider tables to use when there is no config file: name -> table."""
        ...

    def check(self, name: str, config: ProviderConfig, environ: Mapping[str, str]) -> None:
        """ConfigError when the provider `name`'s type cannot serve its table in this environment."""
        ...


def _problems(err: ValidationError, prefix: tuple[str, ...] = ()) -> list[str]:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in (*prefix, *e["loc"]))
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return parts


def _provider(name: str, table: Any, types: TypeSource, source: str, problems: list[str]) -> ProviderConfig:
    """The table validated by its type's model; on a problem (noted), a stand-in so that aliases
    naming this provider are not reported as well."""
    if not isinstance(table, dict):
        problems.append(f"providers.{name}: must be a table")
        return ProviderConfig.model_construct(type=name)
    ptype = table.get("type") or name
    if not isinstance(ptype, str) or ptype not in types.names():
        where = f"providers.{name}.type" if table.get("type") else f"providers.{name}"
        hint = "" if table.get("type") else " (set 'type')"
        raise ConfigError(
            f"{source}: {where}: unknown provider type {ptype!r}{hint}; "
            f"known types: {', '.join(sorted(types.names()))}"
        )
    try:
        model = types.config_model(ptype)
    except ConfigError as e:
        raise ConfigError(f"{source}: providers.{name}: {e.message}") from None
    try:
        return model.model_validate({**table, "type": ptype})
    except ValidationError as e:
        problems.extend(_problems(e, ("providers", name)))
        return ProviderConfig.model_construct(type=ptype)


def load_config(path: Path, *, types: TypeSource, environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate `path`; with no file there, configure providers from the environment."""
    env = os.environ if environ is None else environ
    source = str(path)
    raw: dict[str, Any]
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{source}: invalid TOML: {e}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{source}: cannot read: {e}") from None
    else:
        raw = {"providers": types.environment_providers(env)}
        source = f"{source} (absent; configured from the environment)"
    tables = raw.pop("providers", {})
    problems: list[str] = []
    providers: dict[str, ProviderConfig] = {}
    if not isinstance(tables, dict):
        problems.append("providers: must be a table of [providers.NAME] tables")
        tables = {}
    for name, table in tables.items():
        providers[name] = _provider(name, table, types, source, problems)
    try:
        cfg = Config.model_validate({**raw, "providers": providers})
    except ValidationError as e:
        problems[:0] = _problems(e)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return cfg


def redact_url(url: str) -> str:
    """A URL safe to show: without user:password@ and without its query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def masked_dump(cfg: Config) -> dict[str, Any]:
    """The config as plain data with every secret masked; safe to print."""
    data: dict[str, Any] = cfg.model_dump(mode="json", exclude_none=True)
    for p in data.get("providers", {}).values():
        if isinstance(p.get("base_url"), str):
            p["base_url"] = redact_url(p["base_url"])
    telemetry = data.get("telemetry", {})
    if isinstance(telemetry.get("otlp_endpoint"), str):
        telemetry["otlp_endpoint"] = redact_url(telemetry["otlp_endpoint"])
    return data
