"""The `anthropic` provider type: Claude through the Anthropic Messages API.

The key comes from the table (`api_key` or `api_key_env`), else from ANTHROPIC_API_KEY or
CLAUDE_API_KEY.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from aigw.domain import Price
from aigw.providers.remote import HttpProviderConfig, HttpType
from aigw.providers.spec import ProviderContext, packaged_prices

if TYPE_CHECKING:
    from aigw.providers.anthropic.provider import AnthropicProvider

API_VERSION = "2023-06-01"


class AnthropicType(HttpType[HttpProviderConfig]):
    name = "anthropic"
    config_model = HttpProviderConfig
    default_base_url = "https://api.anthropic.com/v1"
    key_envs = ("ANTHROPIC_API_KEY", "CLAUDE_API_KEY")
    probe_path = "/models?limit=1"

    def auth_headers(self, key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if key is not None:
            headers["x-api-key"] = key
        return headers

    def create(self, name: str, config: HttpProviderConfig, ctx: ProviderContext) -> AnthropicProvider:
        from aigw.providers.anthropic.provider import AnthropicProvider

        return AnthropicProvider(name, config, self.connection(config, ctx.environ))

    def prices(self) -> Mapping[str, Price]:
        return packaged_prices(__name__)


TYPE = AnthropicType()
