"""What every provider type reached over HTTP shares: its table's keys (`HttpProviderConfig`), and
how its API key is found, checked and probed (`HttpType`).

A vendor's type says only what differs: its default base URL, the environment variables that hold
its key, how the key is sent, and which GET tells doctor that the key works.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from aigw.config.model import ProviderConfig, has_control_character
from aigw.errors import ConfigError
from aigw.providers.spec import HttpProbe, ProbeEnv, ProviderType


class HttpProviderConfig(ProviderConfig):
    """A provider reached over HTTP: where, with which key, and how patiently."""

    base_url: str | None = None
    """The API's base URL (default: the vendor's own)."""
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    """The environment variable holding the key (default: the vendor's usual ones)."""
    models: list[str] = Field(default_factory=list)
    """Model names to advertise besides those the API lists."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    first_byte_timeout_s: float = Field(default=120.0, gt=0)
    read_timeout_s: float = Field(default=120.0, gt=0)
    total_timeout_s: float = Field(default=600.0, gt=0)
    max_connections: int = Field(default=256, ge=1)

    @field_validator("api_key", "headers")
    @classmethod
    def _no_control_characters(cls, v: Any) -> Any:
        values = v.values() if isinstance(v, dict) else [v]
        for secret in values:
            if secret is not None and has_control_character(secret.get_secret_value()):
                raise ValueError("contains a control character (a stray newline?)")
        return v

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v


H = TypeVar("H", bound=HttpProviderConfig)


@dataclass(frozen=True, slots=True)
class Connection:
    """Where a provider's requests go and the headers each carries (its key among them): what its
    type works out from the table and the environment, handed to the provider."""

    base_url: str
    headers: Mapping[str, str] = field(repr=False)


def key_from(environ: Mapping[str, str], var: str) -> SecretStr | None:
    """The key in `$var`, stripped; None when unset or blank; ConfigError on a control character."""
    value = environ.get(var, "").strip()
    if not value:
        return None
    if has_control_character(value):
        raise ConfigError(f"${var} contains a control character")
    return SecretStr(value)


class HttpType(ProviderType[H]):
    """A provider type whose API is reached over HTTP with an API key."""

    default_base_url: str = ""
    key_envs: tuple[str, ...] = ()
    """Environment variables that may hold the key, in order."""
    keys_follow_custom_urls: bool = True
    """Whether `key_envs` apply when the table sets its own base_url. False for a type that also
    fronts other servers (OpenAI-compatible ones), so the vendor's key never goes to them."""
    probe_path: str = "/models"
    """A cheap authenticated GET under the base URL."""

    # -- the key -------------------------------------------------------------------------------

    def key_vars(self, config: H) -> tuple[str, ...]:
        """The variables this table's key is looked for in."""
        if config.api_key_env:
            return (config.api_key_env,)
        if config.api_key is not None:
            return ()
        if config.base_url is None or self.keys_follow_custom_urls:
            return self.key_envs
        return ()

    def api_key(self, config: H, environ: Mapping[str, str]) -> SecretStr | None:
        """The key to send: the table's own, else the first variable set; ConfigError on a bad one."""
        if config.api_key is not None:
            return config.api_key
        for var in self.key_vars(config):
            if (key := key_from(environ, var)) is not None:
                return key
        return None

    def auth_headers(self, key: str | None) -> dict[str, str]:
        """The headers every request carries: the key, and any fixed ones the API wants."""
        return {"Authorization": f"Bearer {key}"} if key is not None else {}

    def base_url(self, config: H) -> str:
        return (config.base_url or self.default_base_url).rstrip("/")

    def connection(self, config: H, environ: Mapping[str, str]) -> Connection:
        key = self.api_key(config, environ)
        return Connection(self.base_url(config), self.auth_headers(key.get_secret_value() if key else None))

    # -- ProviderType --------------------------------------------------------------------------

    def check(self, config: H, environ: Mapping[str, str]) -> None:
        self.api_key(config, environ)

    def has_credentials(self, config: H, environ: Mapping[str, str]) -> bool:
        try:
            return self.api_key(config, environ) is not None
        except ConfigError:
            return False

    def env_table(self, var: str, environ: Mapping[str, str]) -> dict[str, Any]:
        """The table `from_environment` makes when `$var` holds this type's key."""
        return {"type": self.name, "api_key_env": var}

    def from_environment(self, environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        for var in self.key_envs:
            if environ.get(var):
                return {self.name: self.env_table(var, environ)}
        return {}

    def probe(self, name: str, config: H, env: ProbeEnv) -> HttpProbe:
        base = self.base_url(config)
        official = urlsplit(base).hostname == urlsplit(self.default_base_url).hostname
        key: SecretStr | None = None
        where, error = "", None
        if config.api_key is not None:
            key, where = config.api_key, "key set in the config"
        else:
            for var in self.key_vars(config):
                try:
                    key = key_from(env.environ, var)
                except ConfigError as e:
                    where, error = f"${var}", e.message
                    break
                if key is not None:
                    where = f"key from ${var}"
                    break
            else:
                where = " or ".join(f"${v}" for v in self.key_vars(config))
        plain = key.get_secret_value() if key is not None else None
        headers = {h: v.get_secret_value() for h, v in config.headers.items()}
        headers.update(self.auth_headers(plain))
        return HttpProbe(
            base_url=base,
            url=base + self.probe_path,
            headers=headers,
            key_present=key is not None,
            key_where=where,
            key_expected=bool(self.key_vars(config)) or official,
            official=official,
            key_error=error,
        )
