"""Configuration: the tables of `config.toml` (`model`), how a file is read and validated
(`load`), and the checked loading the daemon and every CLI command use (`checked.load_checked`)."""

from __future__ import annotations

from aigw.config.load import TypeSource, load_config, masked_dump, redact_url
from aigw.config.model import (
    AliasConfig,
    BreakerConfig,
    CacheConfig,
    ChatConfig,
    Config,
    LimitsConfig,
    LocalConfig,
    PriceConfig,
    ProviderConfig,
    RagConfig,
    RoutingConfig,
    ServerConfig,
    Strict,
    TargetConfig,
    UsageConfig,
    has_control_character,
)
from aigw.config.telemetry import TelemetryConfig

__all__ = [
    "AliasConfig",
    "BreakerConfig",
    "CacheConfig",
    "ChatConfig",
    "Config",
    "LimitsConfig",
    "LocalConfig",
    "PriceConfig",
    "ProviderConfig",
    "RagConfig",
    "RoutingConfig",
    "ServerConfig",
    "Strict",
    "TargetConfig",
    "TelemetryConfig",
    "TypeSource",
    "UsageConfig",
    "has_control_character",
    "load_config",
    "masked_dump",
    "redact_url",
]
