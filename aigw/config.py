"""Configuration: `config.toml` plus the environment, validated by pydantic.

`load_config(path)` is the only entry point. Unknown keys and wrong types raise `ConfigError`
with one line naming the file and the key. Secrets are `SecretStr`: printing or dumping a config
never reveals them.
"""

from __future__ import annotations

import importlib.util
import os
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from aigw.errors import ConfigError

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"

# Environment variables that configure a provider when there is no config file: type -> key vars.
ENV_PROVIDERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "openai": ("OPENAI_API_KEY",),
        "anthropic": ("ANTHROPIC_API_KEY", "CLAUDE_API_KEY"),
        "gemini": ("GEMINI_API_KEY",),
    }
)


# Local providers configured when there is no config file: name -> (type, module it needs).
ENV_LOCAL_PROVIDERS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {"local": ("llama_cpp", "llama_cpp"), "mlx": ("mlx", "mlx_lm")}
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    require_keys: bool = False
    """Every /v1 request needs `Authorization: Bearer KEY`. Off, keys are optional on loopback."""
    allowed_origins: list[str] = Field(default_factory=list)
    """Browser origins allowed by CORS (exact, e.g. "http://localhost:3000"); none by default."""
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("allowed_origins")
    @classmethod
    def _exact_origins(cls, v: list[str]) -> list[str]:
        for origin in v:
            if origin == "*" or not origin.startswith(("http://", "https://")):
                raise ValueError(f"{origin!r} is not an origin like http://localhost:3000 (no wildcards)")
        return v


class LocalModelConfig(_Strict):
    """A local model given as a table: `tiny = { path = "tiny.gguf", embedding = true }`."""

    path: str = Field(min_length=1)
    embedding: bool = False
    context: int | None = Field(default=None, ge=64)


class LocalConfig(_Strict):
    """The local engine (llama.cpp, MLX): shared by every local provider."""

    keep_alive_s: float = Field(default=300.0, ge=-1)
    """How long a model stays loaded after its last request; -1 keeps it loaded."""
    memory_budget_gb: float | None = Field(default=None, gt=0)
    """Memory all loaded models may hold together (default: memory_fraction of RAM)."""
    memory_fraction: float = Field(default=0.6, gt=0, le=1)
    max_queue: int = Field(default=8, ge=1)
    """Requests per model, running included; more get 503 with Retry-After."""
    load_wait_s: float = Field(default=30.0, ge=0)
    """How long a load waits for busy models to free memory before a 503."""
    threads: int | None = Field(default=None, ge=1)
    gpu_layers: int = -1
    """Layers offloaded to Metal on Apple Silicon (-1: all)."""

    def budget_bytes(self) -> int:
        if self.memory_budget_gb is not None:
            return int(self.memory_budget_gb * 1024**3)
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return int(total * self.memory_fraction)


class ProviderConfig(_Strict):
    type: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    # Models this provider serves. openai: names to advertise (besides discovery);
    # llama_cpp / mlx: name -> GGUF file or model directory.
    models: list[str] | dict[str, str | LocalModelConfig] = Field(default_factory=list)
    discover_models: bool = True
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    first_byte_timeout_s: float = Field(default=120.0, gt=0)
    read_timeout_s: float = Field(default=120.0, gt=0)
    total_timeout_s: float = Field(default=600.0, gt=0)
    max_connections: int = Field(default=256, ge=1)
    # Ask OpenAI-compatible upstreams for a usage chunk on every stream (hidden from clients
    # that did not ask for it); turn off for servers that reject stream_options.
    stream_usage: bool = True

    @field_validator("api_key", "headers")
    @classmethod
    def _no_control_characters(cls, v: Any) -> Any:
        values = v.values() if isinstance(v, dict) else [v]
        for secret in values:
            if secret is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in secret.get_secret_value()):
                raise ValueError("contains a control character (a stray newline?)")
        return v

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v

    def api_key_value(self, environ: Mapping[str, str]) -> SecretStr | None:
        if self.api_key is not None:
            return self.api_key
        value = environ.get(self.api_key_env, "").strip() if self.api_key_env else ""
        if not value:
            return None
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ConfigError(f"${self.api_key_env} contains a control character")
        return SecretStr(value)

    def model_names(self) -> list[str]:
        return list(self.models) if isinstance(self.models, list) else list(self.models.keys())


class TargetConfig(_Strict):
    provider: str
    model: str


class AliasConfig(_Strict):
    targets: list[TargetConfig] = Field(min_length=1)


class BreakerConfig(_Strict):
    """A circuit breaker per target (provider + upstream model)."""

    failures: int = Field(default=5, ge=1)
    """Consecutive failures that open the breaker."""
    failure_ratio: float = Field(default=0.5, gt=0, le=1)
    """Failure share over `window_s` that opens it, once `min_requests` were seen in the window."""
    window_s: float = Field(default=60.0, gt=0)
    min_requests: int = Field(default=20, ge=1)
    cooldown_s: float = Field(default=30.0, gt=0)
    """How long an open breaker skips its target before one probe request may try it."""


class RoutingConfig(_Strict):
    """Retries, fallback and deadlines for every route."""

    retries: int = Field(default=2, ge=0, le=10)
    """Extra attempts on the same target after a retryable failure, before falling back."""
    backoff_base_s: float = Field(default=0.2, ge=0)
    backoff_max_s: float = Field(default=5.0, ge=0)
    retry_after_cap_s: float = Field(default=10.0, ge=0)
    """Honour an upstream's Retry-After up to this; a longer wait moves on to the next target."""
    deadline_s: float = Field(default=300.0, gt=0)
    """Bounds a request's whole chain of attempts (for a stream: until its first content)."""
    first_token_timeout_s: float = Field(default=30.0, gt=0)
    """A stream with no content by then falls back to the next target (when there is one)."""
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)


class LimitsConfig(_Strict):
    """Rate limits for requests without a key of their own limits (per client address when keys
    are off). 0 means unlimited."""

    rpm: int = Field(default=0, ge=0)
    tpm: int = Field(default=0, ge=0)


class PriceConfig(_Strict):
    input: float = Field(ge=0)
    """USD per million prompt tokens."""
    output: float = Field(ge=0)
    """USD per million completion tokens."""


class UsageConfig(_Strict):
    log_content: bool = False
    """Store prompts and completions with each usage row (off: only counts and costs)."""
    flush_interval_s: float = Field(default=1.0, gt=0, le=60)


class CacheConfig(_Strict):
    """The response cache. `cache = "all"` (a bare mode) is short for `[cache] mode = "all"`."""

    mode: Literal["deterministic", "all", "off"] = "deterministic"
    """deterministic: only requests that ask for it (temperature 0, or a seed) and embeddings;
    all: every successful answer; off: nothing is cached."""
    ttl_s: float = Field(default=24 * 3600.0, gt=0)
    max_size_mb: float = Field(default=1024.0, gt=0)
    """On-disk size bound; the oldest entries are evicted beyond it."""
    memory_mb: float = Field(default=32.0, ge=0)
    """Recently used entries kept in memory as well (0: every hit reads the disk)."""
    shared: bool = True
    """One cache for every API key. False: each key has its own entries, so no key can tell from
    a hit that another key sent the same request (requests without a key share one)."""


class RagConfig(_Strict):
    """RAG over local folders (`aigw rag ...`, /v1/rag/*)."""

    model: str = Field(default="all-MiniLM-L6-v2", min_length=1)
    """The embedding model: the bundled all-MiniLM-L6-v2, or a sentence-transformers model in the
    local Hugging Face cache. It is also served on /v1/embeddings under this name."""
    chat_model: str | None = Field(default=None, min_length=1)
    """The model that answers `aigw rag query` (default: [chat] default_model)."""
    top_k: int = Field(default=5, ge=1, le=50)


class ChatConfig(_Strict):
    default_model: str | None = Field(default=None, min_length=1)
    """The model `aigw chat` uses without -m (AIGW_MODEL overrides it)."""


class Config(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    chat: ChatConfig = Field(default_factory=ChatConfig)
    local: LocalConfig = Field(default_factory=LocalConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    usage: UsageConfig = Field(default_factory=UsageConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    rag: RagConfig = Field(default_factory=RagConfig)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    """USD per million tokens by "provider/model" or model name; overrides the built-in table."""
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, AliasConfig] = Field(default_factory=dict)

    @field_validator("cache", mode="before")
    @classmethod
    def _cache_shorthand(cls, v: Any) -> Any:
        return {"mode": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check_references(self) -> Config:
        for name in self.providers:
            if not name or "/" in name:
                raise ValueError(f"provider name {name!r} must be non-empty and contain no '/'")
        for alias, spec in self.models.items():
            for i, t in enumerate(spec.targets):
                if t.provider not in self.providers:
                    known = ", ".join(sorted(self.providers)) or "none configured"
                    raise ValueError(
                        f"models.{alias}.targets[{i}]: unknown provider {t.provider!r} (known: {known})"
                    )
        return self

    def provider_type(self, name: str) -> str:
        p = self.providers[name]
        return p.type or name


def _format_validation_error(source: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return f"{source}: " + "; ".join(parts)


def _resolve_types(cfg: Config, source: str, known_types: Collection[str]) -> Config:
    providers: dict[str, ProviderConfig] = {}
    for name, p in cfg.providers.items():
        ptype = p.type or name
        if ptype not in known_types:
            where = f"providers.{name}.type" if p.type else f"providers.{name}"
            hint = "" if p.type else " (set 'type')"
            raise ConfigError(
                f"{source}: {where}: unknown provider type {ptype!r}{hint}; "
                f"known types: {', '.join(sorted(known_types))}"
            )
        updates: dict[str, Any] = {"type": ptype}
        if ptype == "openai" and p.base_url is None and p.api_key_env is None and p.api_key is None:
            updates["api_key_env"] = "OPENAI_API_KEY"
        providers[name] = p.model_copy(update=updates)
    return cfg.model_copy(update={"providers": providers})


def _providers_from_env(environ: Mapping[str, str], known_types: Collection[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ptype, keys in ENV_PROVIDERS.items():
        if ptype not in known_types:
            continue
        for key in keys:
            if environ.get(key):
                entry: dict[str, Any] = {"type": ptype, "api_key_env": key}
                if ptype == "openai" and environ.get("OPENAI_BASE_URL"):
                    entry["base_url"] = environ["OPENAI_BASE_URL"]
                out[ptype] = entry
                break
    # Serve what `aigw models pull` puts in the models dir, with each engine that is installed.
    for name, (ptype, module) in ENV_LOCAL_PROVIDERS.items():
        if ptype in known_types and importlib.util.find_spec(module) is not None:
            out[name] = {"type": ptype}
    return out


def load_config(
    path: Path,
    *,
    known_types: Collection[str],
    environ: Mapping[str, str] | None = None,
) -> Config:
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
        raw = {"providers": _providers_from_env(env, known_types)}
        source = f"{source} (absent; configured from the environment)"
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(source, e)) from None
    return _resolve_types(cfg, source, known_types)


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
        if "base_url" in p:
            p["base_url"] = redact_url(p["base_url"])
    return data
