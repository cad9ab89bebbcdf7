"""Built-in provider types come through the same entry-point group a plugin would use."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from aigw.config import LocalConfig
from aigw.engine.engine import Engine, EngineLimits
from aigw.errors import ConfigError
from aigw.paths import Paths
from aigw.providers.openai import TYPE as OPENAI
from aigw.providers.openai import TYPE as TYPE_OPENAI
from aigw.providers.openai import OpenAIConfig
from aigw.providers.openai.provider import OpenAICompatProvider
from aigw.providers.registry import ProviderRegistry
from aigw.providers.spec import ProviderContext, ProviderType


def ctx_for(tmp_path: Path) -> ProviderContext:
    return ProviderContext(
        environ={},
        paths=Paths.from_env({"AIGW_HOME": str(tmp_path)}),
        engine=Engine(EngineLimits(memory_budget_bytes=1 << 30)),
        local=LocalConfig(),
    )


def test_builtin_types_are_registered_through_entry_points(tmp_path: Path) -> None:
    reg = ProviderRegistry.from_entry_points()
    assert {"openai", "anthropic", "gemini", "llama_cpp", "mlx"} <= reg.names()
    assert reg.get("openai") is OPENAI
    config = OpenAIConfig(type="openai", base_url="http://127.0.0.1:1/v1")
    provider = reg.create("work", config, ctx_for(tmp_path))
    assert isinstance(provider, OpenAICompatProvider) and provider.name == "work"


def test_a_plugin_type_is_used_like_a_builtin(tmp_path: Path) -> None:
    made: list[str] = []

    class Mine(ProviderType[OpenAIConfig]):
        name = "myplugin"
        config_model = OpenAIConfig

        def create(self, name: str, config: OpenAIConfig, ctx: ProviderContext) -> Any:
            made.append(name)
            return OpenAICompatProvider(name, config, TYPE_OPENAI.connection(config, ctx.environ))

    reg = ProviderRegistry(types={"myplugin": Mine()})
    reg.create("mine", OpenAIConfig(type="myplugin"), ctx_for(tmp_path))
    assert made == ["mine"] and reg.names() == {"myplugin"}


def test_unknown_type() -> None:
    with pytest.raises(ConfigError, match="unknown provider type 'nope'"):
        ProviderRegistry().get("nope")


def test_an_entry_point_that_is_not_a_type_is_refused() -> None:
    ep = EntryPoint("odd", "aigw.providers.openai:OpenAIConfig", "aigw.providers")
    reg = ProviderRegistry(entry={"odd": ep})
    with pytest.raises(ConfigError, match="is not an aigw ProviderType"):
        reg.get("odd")


def test_a_broken_type_is_skipped_when_looking_around(caplog: pytest.LogCaptureFixture) -> None:
    broken = EntryPoint("broken", "aigw_no_such_module:TYPE", "aigw.providers")
    reg = ProviderRegistry(entry={"broken": broken}, types={"openai": OPENAI})
    assert reg.loadable() == [OPENAI]
    assert "cannot be loaded" in caplog.text
    with pytest.raises(ConfigError, match="is its extra installed"):
        reg.get("broken")


def test_prices_come_from_every_type() -> None:
    prices = ProviderRegistry.from_entry_points().prices()
    assert {"gpt-4o-mini", "claude-3-5-haiku", "gemini-2.0-flash"} <= set(prices)
