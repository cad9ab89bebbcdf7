"""The configuration's shape: one pydantic model per `config.toml` table, strict (unknown keys are
refused) and frozen. Loading and checking it is `aigw.config.load`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, SerializeAsAny, field_validator, model_validator

from aigw.config.telemetry import TelemetryConfig

if TYPE_CHECKING:
    from aigw.engine.memory import Budget, MemoryFacts


class Strict(BaseModel):
    """A config table: unknown keys refused, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    require_keys: bool = False
    """Every /v1 request needs `Authorization: Bearer KEY`. Off, keys are optional on loopback."""
    allowed_origins: list[str] = Field(default_factory=list)
    """Browser origins allowed by CORS (exact, e.g. "http://localhost:3000"); none by default."""
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_header_bytes: int = Field(default=64 * 1024, ge=4096)
    """A request's line and headers together; more is a 431 and the connection closes."""
    header_timeout_s: float = Field(default=10.0, gt=0)
    """How long a request's line and headers may take to arrive (and a new connection may stay
    silent); then a 408 and the connection closes."""
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("allowed_origins")
    @classmethod
    def _exact_origins(cls, v: list[str]) -> list[str]:
        for origin in v:
            if origin == "*" or not origin.startswith(("http://", "https://")):
                raise ValueError(f"{origin!r} is not an origin like http://localhost:3000 (no wildcards)")
        return v


class LocalConfig(Strict):
    """The local engine (llama.cpp, MLX): shared by every local provider."""

    keep_alive_s: float = Field(default=300.0, ge=-1)
    """How long a model stays loaded after its last request; -1 keeps it loaded."""
    memory_budget_gb: float | None = Field(default=None, gt=0)
    """Memory all loaded models may hold together. Default: on Apple Silicon 90% of what the GPU
    may use (the iogpu.wired_limit_mb sysctl when set, else Metal's recommended working set);
    elsewhere memory_fraction of RAM (see aigw.engine.memory)."""
    memory_fraction: float = Field(default=0.6, gt=0, le=1)
    """The share of RAM for models without memory_budget_gb; on Apple Silicon only when set here."""
    pressure_poll_s: float = Field(default=2.0, ge=0)
    """How often the system's memory pressure is read, to give memory back before it swaps (0: never)."""
    max_queue: int = Field(default=8, ge=1)
    """Requests per model, running included; more get 503 with Retry-After."""
    load_wait_s: float = Field(default=30.0, ge=0)
    """How long a load waits for busy models to free memory before a 503."""
    threads: int | None = Field(default=None, ge=1)
    gpu_layers: int = -1
    """Layers offloaded to Metal on Apple Silicon (-1: all)."""
    prompt_cache_gb: float | None = Field(default=None, ge=0)
    """Memory each local model may hold in saved prompt states (other conversations' caches,
    kept for their next turn); default an eighth of the memory budget. Counted in the budget,
    and dropped before any model is unloaded to make room."""
    image_dirs: list[str] = Field(default_factory=list)
    """Folders whose image files a request may name (`file://` URLs or absolute paths) for a
    local vision model; none by default, so callers can send images only as data: URLs."""

    def budget(self, facts: MemoryFacts | None = None) -> Budget:
        """The memory budget and where it comes from, on this machine (or the `facts` given)."""
        from aigw.engine.memory import derive_budget, real_memory_facts

        return derive_budget(
            facts or real_memory_facts(),
            explicit_gb=self.memory_budget_gb,
            fraction=self.memory_fraction,
            fraction_set="memory_fraction" in self.model_fields_set,
        )

    def budget_bytes(self, facts: MemoryFacts | None = None) -> int:
        return self.budget(facts).bytes

    def prompt_cache_bytes(self) -> int:
        if self.prompt_cache_gb is not None:
            return int(self.prompt_cache_gb * 1024**3)
        return self.budget_bytes() // 8


class ProviderConfig(Strict):
    """A `[providers.NAME]` table. Each provider type validates its tables with its own subclass
    (`ProviderType.config_model`), which adds the keys that type understands; keys no type knows
    are refused, as everywhere in the config."""

    type: str | None = None
    """The provider type (openai, anthropic, gemini, llama_cpp, mlx, or a plugin's); defaults to
    the table's name when that is a known type."""
    discover_models: bool = True
    """Ask the provider which models it serves (besides those the table names)."""


class TargetConfig(Strict):
    provider: str
    model: str
    weight: float | None = Field(default=None, gt=0, allow_inf_nan=False, strict=True)
    """The target's share of its alias's requests under strategy = "weighted" (default 1);
    refused with any other strategy, where it would mean nothing."""


Strategy = Literal["ordered", "round_robin", "weighted", "least_busy"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


class AliasConfig(Strict):
    strategy: Strategy = "ordered"
    """The order each request tries the targets in (aigw.routing.balance): ordered (as listed,
    a fallback chain), round_robin, weighted (by each target's `weight`), least_busy (fewest
    requests in flight). The rest of a request's order is its fallback either way."""
    targets: list[TargetConfig] = Field(min_length=1)

    @field_validator("strategy", mode="before")
    @classmethod
    def _known_strategy(cls, v: Any) -> Any:
        if not isinstance(v, str) or v not in STRATEGIES:
            raise ValueError(f"unknown strategy {v!r}; known: {', '.join(STRATEGIES)}")
        return v

    @model_validator(mode="after")
    def _check_balance(self) -> AliasConfig:
        seen: set[tuple[str, str]] = set()
        for i, t in enumerate(self.targets):
            if t.weight is not None and self.strategy != "weighted":
                raise ValueError(
                    f"targets[{i}].weight needs strategy = \"weighted\" (this alias's strategy is "
                    f"{self.strategy!r}); set the strategy or remove the weight"
                )
            if self.strategy != "ordered" and (t.provider, t.model) in seen:
                raise ValueError(
                    f"targets[{i}]: {t.provider}/{t.model} is listed twice; a balanced alias names "
                    "each target once (with strategy = \"weighted\", give it a larger weight)"
                )
            seen.add((t.provider, t.model))
        return self


class BreakerConfig(Strict):
    """A circuit breaker per target (provider + upstream model)."""

    failures: int = Field(default=5, ge=1)
    """Consecutive failures that open the breaker."""
    failure_ratio: float = Field(default=0.5, gt=0, le=1)
    """Failure share over `window_s` that opens it, once `min_requests` were seen in the window."""
    window_s: float = Field(default=60.0, gt=0)
    min_requests: int = Field(default=20, ge=1)
    cooldown_s: float = Field(default=30.0, gt=0)
    """How long an open breaker skips its target before one probe request may try it."""


class RoutingConfig(Strict):
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


class LimitsConfig(Strict):
    """Rate limits for requests without a key of their own limits (per client address when keys
    are off). 0 means unlimited."""

    rpm: int = Field(default=0, ge=0)
    tpm: int = Field(default=0, ge=0)
    default_max_tokens: int = Field(default=4096, ge=1)
    """The answer a request without max_tokens may give when a token limit or budget applies to
    it (keys' too): its worst case is reserved, and it goes upstream with this max_tokens."""


class PriceConfig(Strict):
    input: float = Field(ge=0)
    """USD per million prompt tokens."""
    output: float = Field(ge=0)
    """USD per million completion tokens."""


class UsageConfig(Strict):
    log_content: bool = False
    """Store prompts and completions with each usage row (off: only counts and costs)."""
    flush_interval_s: float = Field(default=1.0, gt=0, le=60)


class CacheConfig(Strict):
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


class RagConfig(Strict):
    """RAG over local folders (`aigw rag ...`, /v1/rag/*)."""

    model: str = Field(default="all-MiniLM-L6-v2", min_length=1)
    """The embedding model: the bundled all-MiniLM-L6-v2, or a sentence-transformers model in the
    local Hugging Face cache. It is also served on /v1/embeddings under this name."""
    chat_model: str | None = Field(default=None, min_length=1)
    """The model that answers `aigw rag query` (default: [chat] default_model)."""
    top_k: int = Field(default=5, ge=1, le=50)


class StateConfig(Strict):
    """Where API keys and rate limits live: this machine's SQLite (the default), or a Redis that
    several aigw instances share (a team gateway behind a load balancer)."""

    backend: Literal["sqlite", "redis"] = "sqlite"
    url: SecretStr | None = None
    """redis://[user:password@]host:port/db, rediss:// (TLS) or unix:///path.sock; kept secret
    (`aigw config show` masks it)."""
    prefix: str = Field(default="aigw", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    """Every key aigw writes starts with `{prefix` (a Redis Cluster hash tag per subject)."""
    on_state_error: Literal["open", "closed"] = "open"
    """Redis unreachable: `open` serves with this instance's own limits (and says so in logs and
    /health/detailed); `closed` answers 503."""
    timeout_s: float = Field(default=0.25, gt=0, le=10)
    """One Redis call's timeout; a failure holds Redis off for `retry_s` before the next try."""
    retry_s: float = Field(default=1.0, gt=0, le=60)
    shared_breakers: bool = True
    """Instances tell each other when a target's circuit breaker opens or closes."""

    @model_validator(mode="after")
    def _url_for_redis(self) -> StateConfig:
        if self.backend == "redis":
            url = self.url.get_secret_value() if self.url is not None else ""
            if not url.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError('backend "redis" needs url = "redis://host:port" (or rediss://, unix://)')
        return self


class ChatConfig(Strict):
    default_model: str | None = Field(default=None, min_length=1)
    """The model `aigw chat` uses without -m (AIGW_MODEL overrides it)."""


class Config(Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    chat: ChatConfig = Field(default_factory=ChatConfig)
    local: LocalConfig = Field(default_factory=LocalConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    usage: UsageConfig = Field(default_factory=UsageConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    rag: RagConfig = Field(default_factory=RagConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    """USD per million tokens by "provider/model" or model name; overrides the built-in table."""
    providers: dict[str, SerializeAsAny[ProviderConfig]] = Field(default_factory=dict)
    """Each value is its type's own config model (see `aigw.config.load`)."""
    models: dict[str, AliasConfig] = Field(default_factory=dict)
    model_patterns: dict[str, str] = Field(default_factory=dict)
    """Name patterns (globs, `*` and `?`) -> an alias in `models`: agents send their own model names
    (`claude-haiku-*` for background calls), which these send where the user wants; first match wins."""

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
        for pattern, alias in self.model_patterns.items():
            if alias not in self.models:
                known = ", ".join(sorted(self.models)) or "none configured"
                raise ValueError(f"model_patterns.{pattern!r}: unknown alias {alias!r} (known: {known})")
        return self

    def provider_type(self, name: str) -> str:
        p = self.providers[name]
        return p.type or name


def has_control_character(text: str) -> bool:
    """A stray newline or other control character: never valid in a key, token or header value."""
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)
