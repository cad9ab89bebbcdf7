"""Built-in providers come through the same entry-point group a plugin would use."""

from __future__ import annotations

from pathlib import Path

import pytest

from aigw.config import LocalConfig, ProviderConfig
from aigw.errors import ConfigError
from aigw.local.engine import Engine, EngineLimits
from aigw.paths import Paths
from aigw.providers.base import ProviderContext
from aigw.providers.openai.provider import OpenAICompatProvider
from aigw.providers.registry import ProviderRegistry


def ctx_for(tmp_path: Path) -> ProviderContext:
    return ProviderContext(
        environ={},
        paths=Paths.from_env({"AIGW_HOME": str(tmp_path)}),
        engine=Engine(EngineLimits(memory_budget_bytes=1 << 30)),
        local=LocalConfig(),
    )


def test_openai_is_registered_through_entry_points(tmp_path: Path) -> None:
    reg = ProviderRegistry.from_entry_points()
    assert {"openai", "llama_cpp"} <= reg.types()
    ctx = ctx_for(tmp_path)
    provider = reg.create("work", ProviderConfig(type="openai", base_url="http://127.0.0.1:1/v1"), ctx)
    assert isinstance(provider, OpenAICompatProvider) and provider.name == "work"


def test_a_plugin_factory_is_used_like_a_builtin(tmp_path: Path) -> None:
    made: list[str] = []

    def factory(name: str, config: ProviderConfig, ctx: ProviderContext) -> OpenAICompatProvider:
        made.append(name)
        return OpenAICompatProvider(name, config, ctx.environ)

    reg = ProviderRegistry(factories={"myplugin": factory})
    ctx = ctx_for(tmp_path)
    reg.create("mine", ProviderConfig(type="myplugin"), ctx)
    assert made == ["mine"] and reg.types() == {"myplugin"}


def test_unknown_type() -> None:
    with pytest.raises(ConfigError):
        ProviderRegistry().factory("nope")
