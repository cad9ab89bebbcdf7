"""The `gemini` provider type: Google's Generative Language API (generateContent and friends).

The key comes from the table (`api_key` or `api_key_env`), else from GEMINI_API_KEY.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from aigw.domain import Price
from aigw.providers.remote import HttpProviderConfig, HttpType
from aigw.providers.spec import ProviderContext, packaged_prices

if TYPE_CHECKING:
    from aigw.providers.gemini.provider import GeminiProvider


class GeminiType(HttpType[HttpProviderConfig]):
    name = "gemini"
    config_model = HttpProviderConfig
    default_base_url = "https://generativelanguage.googleapis.com/v1beta"
    key_envs = ("GEMINI_API_KEY",)
    probe_path = "/models?pageSize=1"

    def auth_headers(self, key: str | None) -> dict[str, str]:
        return {"x-goog-api-key": key} if key is not None else {}

    def create(self, name: str, config: HttpProviderConfig, ctx: ProviderContext) -> GeminiProvider:
        from aigw.providers.gemini.provider import GeminiProvider

        return GeminiProvider(name, config, self.connection(config, ctx.environ))

    def prices(self) -> Mapping[str, Price]:
        return packaged_prices(__name__)


TYPE = GeminiType()
