"""The table of an `openai` provider."""

from __future__ import annotations

from aigw.providers.remote import HttpProviderConfig


class OpenAIConfig(HttpProviderConfig):
    stream_usage: bool = True
    """Ask for a usage chunk on every stream (hidden from clients that did not ask for it); turn
    off for servers that reject stream_options."""
    responses_api: bool | None = None
    """The upstream serves the Responses API (`/responses`): /v1/responses requests are then
    passed through unchanged. Unset: only OpenAI's own API (api.openai.com) is taken to."""
