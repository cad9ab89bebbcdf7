"""A legacy text completion (`POST /v1/completions`): a raw prompt continued, with no chat
template, or a gap filled between a prompt and a `suffix` (fill-in-the-middle, what editors'
autocomplete sends). Its answer is a `ChatResponse` whose object is `text_completion` and whose
choices carry `text` (chunks likewise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Prompt = str | list[int]
"""One prompt: text, or token ids of the model's own vocabulary."""


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    body: dict[str, Any]
    """The validated wire body as the client sent it, minus aigw's own fields."""
    model: str
    """The model name the upstream should see (set by model resolution)."""

    def with_model(self, model: str) -> CompletionRequest:
        return CompletionRequest(self.body, model)

    @property
    def prompts(self) -> list[Prompt]:
        """Every prompt the request holds: each makes `n` choices, in order."""
        p = self.body["prompt"]
        if isinstance(p, str):
            return [p]
        if p and all(isinstance(t, int) for t in p):
            return [list(p)]  # one prompt of token ids
        return list(p)

    @property
    def choices(self) -> int:
        """The answers it asks for: `n` for each prompt."""
        return len(self.prompts) * self.n

    def admission_body(self) -> dict[str, Any]:
        """The body limits and budgets judge: every choice's max_tokens reserved, not one's."""
        asked = self.body.get("max_tokens")
        choices = self.choices
        if choices == 1 or not isinstance(asked, int):
            return self.body
        return {**self.body, "max_tokens": asked * choices}

    def capped(self, cap: int) -> CompletionRequest:
        """The request with its answers capped at `cap` tokens between them."""
        return CompletionRequest({**self.body, "max_tokens": max(1, cap // self.choices)}, self.model)

    @property
    def suffix(self) -> str | None:
        """The text after the gap to fill (None: a plain continuation)."""
        v = self.body.get("suffix")
        return v if isinstance(v, str) else None

    @property
    def n(self) -> int:
        return int(self.body.get("n") or 1)

    @property
    def echo(self) -> bool:
        return bool(self.body.get("echo"))

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def include_usage(self) -> bool:
        opts = self.body.get("stream_options")
        return bool(isinstance(opts, dict) and opts.get("include_usage"))

    @property
    def max_tokens(self) -> int | None:
        """None: no bound but the model's own end and its context (as llama.cpp's server and
        Ollama do; OpenAI's own default is 16, which an upstream applies itself)."""
        v = self.body.get("max_tokens")
        return None if v is None else int(v)

    @property
    def stop(self) -> list[str]:
        v = self.body.get("stop")
        if v is None:
            return []
        return [v] if isinstance(v, str) else list(v)
