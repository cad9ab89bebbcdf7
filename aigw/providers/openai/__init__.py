"""The `openai` provider type: OpenAI, and any OpenAI-compatible server (vLLM, Ollama, llama-server,
LM Studio) at its own `base_url`.

OPENAI_API_KEY is used only for OpenAI's own API: a table with a `base_url` of its own names its
key (`api_key` or `api_key_env`) or goes without, so the OpenAI key never reaches another server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aigw.domain import Price
from aigw.providers.openai.config import OpenAIConfig
from aigw.providers.remote import HttpType
from aigw.providers.spec import ProviderContext, packaged_prices

if TYPE_CHECKING:
    from aigw.providers.openai.provider import OpenAICompatProvider


class OpenAIType(HttpType[OpenAIConfig]):
    name = "openai"
    config_model = OpenAIConfig
    default_base_url = "https://api.openai.com/v1"
    key_envs = ("OPENAI_API_KEY",)
    keys_follow_custom_urls = False

    def env_table(self, var: str, environ: Mapping[str, str]) -> dict[str, Any]:
        table = super().env_table(var, environ)
        if environ.get("OPENAI_BASE_URL"):
            table["base_url"] = environ["OPENAI_BASE_URL"]
        return table

    def create(self, name: str, config: OpenAIConfig, ctx: ProviderContext) -> OpenAICompatProvider:
        from aigw.providers.openai.provider import OpenAICompatProvider

        return OpenAICompatProvider(name, config, self.connection(config, ctx.environ))

    def prices(self) -> Mapping[str, Price]:
        return packaged_prices(__name__)


TYPE = OpenAIType()
