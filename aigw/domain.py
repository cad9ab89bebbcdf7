"""Provider-neutral request and response types.

Requests keep the validated OpenAI wire body (`body`) so that fields aigw does not know pass
through to OpenAI-compatible upstreams unchanged; typed accessors serve providers that translate.
Responses hold OpenAI-shaped choices; `extra` carries top-level fields aigw does not interpret.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True)
class Timing:
    """How a local model spent a generation's time, for explaining a slow answer (the usage log,
    /admin/stats). aigw's own figure: never part of any wire format."""

    prefill_s: float
    """From the start of the run to the first generated token: reading the prompt (the part no
    cached state covered), images included."""
    decode_s: float
    """From the first generated token to the last."""
    load_s: float = 0.0
    """Before the run: waiting for the model to load (nothing when it was loaded)."""

    def decode_tps(self, completion_tokens: int) -> float | None:
        """Generated tokens per second after the first (None when there were fewer than two)."""
        if completion_tokens < 2 or self.decode_s <= 0:
            return None
        return (completion_tokens - 1) / self.decode_s


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # *_tokens_details and the like
    timing: Timing | None = None
    """A local model's prefill and decode time (None for any other answer); not on the wire."""

    @property
    def cached_tokens(self) -> int | None:
        """Prompt tokens the upstream read from its own prompt cache, when it says."""
        details = self.extra.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        return cached if isinstance(cached, int) and not isinstance(cached, bool) else None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        out.update(self.extra)
        return out

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Usage:
        """From aigw's own OpenAI-shaped JSON (trusted: a cached answer, say)."""
        p, c = int(d.get("prompt_tokens") or 0), int(d.get("completion_tokens") or 0)
        extra = {k: v for k, v in d.items() if k not in _USAGE_KEYS}
        return cls(p, c, int(d.get("total_tokens") or p + c), extra)


_USAGE_KEYS = frozenset({"prompt_tokens", "completion_tokens", "total_tokens"})
_RESPONSE_KEYS = frozenset({"id", "object", "created", "model", "choices", "usage"})
CHAT_COMPLETION = "chat.completion"
CHAT_CHUNK = "chat.completion.chunk"
TEXT_COMPLETION = "text_completion"
"""The `object` of a legacy completion (/v1/completions), whole and streamed: its choices carry
`text` instead of a message or a delta."""


def _parts(d: dict[str, Any], default_object: str) -> dict[str, Any]:
    """The fields of an OpenAI completion or chunk, from aigw's own (trusted) JSON."""
    usage = d.get("usage")
    kind = d.get("object")
    return {
        "object": kind if isinstance(kind, str) else default_object,
        "id": str(d.get("id") or ""),
        "created": int(d.get("created") or 0),
        "model": str(d.get("model") or ""),
        "choices": list(d.get("choices") or []),
        "usage": Usage.from_wire(usage) if isinstance(usage, dict) else None,
        "extra": {k: v for k, v in d.items() if k not in _RESPONSE_KEYS},
    }


@dataclass(frozen=True, slots=True)
class Native:
    """A request as its client sent it in another API's dialect (`anthropic`), for a provider that
    speaks that API to send unchanged (pass-through: nothing lost in translation)."""

    dialect: str
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()
    """Request headers to forward (such as anthropic-beta)."""


EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
_EFFORT_BUDGET = MappingProxyType(
    {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576, "xhigh": 32768}
)


@dataclass(frozen=True, slots=True)
class Reasoning:
    """How hard a client asked the model to think: an effort (one of EFFORTS) and, when its
    dialect gave one (Anthropic's `thinking.budget_tokens`), a budget in tokens."""

    effort: str
    budget: int | None = None

    @property
    def tokens(self) -> int:
        """The thinking budget in tokens: the one given, else the effort's (0 for "none")."""
        if self.budget is not None:
            return self.budget
        return _EFFORT_BUDGET.get(self.effort, 0)

    @classmethod
    def of_budget(cls, budget: int) -> Reasoning:
        effort = "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"
        return cls(effort, budget)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    body: dict[str, Any]
    """The validated OpenAI wire body as the client sent it, minus aigw's own fields."""
    model: str
    """The model name the upstream should see (set by model resolution)."""
    native: Native | None = None
    """The same request in its client's own dialect, when that was not OpenAI's."""
    hint: Reasoning | None = None
    """Reasoning another dialect asked for (Anthropic's `thinking`, the Responses API's
    `reasoning.effort`): a hint a target with reasoning controls applies and any other ignores.
    OpenAI's own `reasoning_effort` is a body field like any other, never ignored."""

    def with_model(self, model: str) -> ChatRequest:
        return ChatRequest(self.body, model, self.native, self.hint)

    @property
    def messages(self) -> list[dict[str, Any]]:
        msgs: list[dict[str, Any]] = self.body["messages"]
        return msgs

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def include_usage(self) -> bool:
        opts = self.body.get("stream_options")
        return bool(isinstance(opts, dict) and opts.get("include_usage"))

    @property
    def temperature(self) -> float | None:
        v = self.body.get("temperature")
        return None if v is None else float(v)

    @property
    def top_p(self) -> float | None:
        v = self.body.get("top_p")
        return None if v is None else float(v)

    @property
    def max_tokens(self) -> int | None:
        v = self.body.get("max_completion_tokens")
        if v is None:
            v = self.body.get("max_tokens")
        return None if v is None else int(v)

    @property
    def stop(self) -> list[str]:
        v = self.body.get("stop")
        if v is None:
            return []
        return [v] if isinstance(v, str) else list(v)

    @property
    def seed(self) -> int | None:
        v = self.body.get("seed")
        return None if v is None else int(v)

    def wants(self, key: str) -> bool:
        """True when the client set `key` to something other than null."""
        return self.body.get(key) is not None


@dataclass(slots=True)
class ChatResponse:
    id: str
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: Usage | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    native: dict[str, Any] | None = None
    """The upstream's answer as it came, for a request passed through in its own dialect (not
    part of the OpenAI form, nor of what the cache keeps)."""
    object: str = CHAT_COMPLETION
    """`text_completion` for a legacy completion (choices with `text`)."""

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": self.choices,
        }
        if self.usage is not None:
            out["usage"] = self.usage.to_wire()
        out.update(self.extra)
        return out

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> ChatResponse:
        """From aigw's own OpenAI-shaped JSON (trusted: a cached answer, say)."""
        return cls(**_parts(d, CHAT_COMPLETION))


@dataclass(slots=True)
class ChatChunk:
    id: str
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: Usage | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    native: bytes = b""
    """The upstream's own SSE events this chunk came from, for a request passed through in its
    dialect (relayed as they came instead of this chunk)."""
    object: str = CHAT_CHUNK
    """`text_completion` for a legacy completion's chunk (choices with `text`)."""

    @property
    def is_usage_only(self) -> bool:
        return not self.choices and self.usage is not None

    def to_wire(self, *, include_usage: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": self.choices,
        }
        if include_usage:
            out["usage"] = None if self.usage is None else self.usage.to_wire()
        out.update(self.extra)
        return out

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> ChatChunk:
        """From aigw's own OpenAI-shaped JSON (trusted: a replayed cached answer, say)."""
        return cls(**_parts(d, CHAT_CHUNK))


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    body: dict[str, Any]
    model: str

    def with_model(self, model: str) -> EmbedRequest:
        return EmbedRequest(self.body, model)

    @property
    def inputs(self) -> list[Any]:
        v = self.body["input"]
        if isinstance(v, str):
            return [v]
        if v and isinstance(v[0], int):
            return [v]  # one pre-tokenised input
        return list(v)


@dataclass(slots=True)
class EmbedResponse:
    model: str
    data: list[dict[str, Any]]
    usage: Usage | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"object": "list", "data": self.data, "model": self.model}
        if self.usage is not None:
            out["usage"] = {
                "prompt_tokens": self.usage.prompt_tokens,
                "total_tokens": self.usage.total_tokens,
            }
        return out

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> EmbedResponse:
        """From aigw's own OpenAI-shaped JSON (trusted: a cached answer, say)."""
        usage = d.get("usage")
        return cls(
            str(d.get("model") or ""),
            list(d.get("data") or []),
            Usage.from_wire(usage) if isinstance(usage, dict) else None,
        )


def embedding_base64(vector: list[float]) -> str:
    """An embedding as OpenAI's `encoding_format: "base64"` gives it: little-endian float32s."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedding_floats(encoded: str) -> list[float]:
    """The floats of a base64 embedding (little-endian float32s)."""
    raw = base64.b64decode(encoded)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw[: len(raw) // 4 * 4]))


def conform_encoding(resp: EmbedResponse, encoding_format: object) -> EmbedResponse:
    """The answer in the `encoding_format` the client asked for, whatever the target gave: local
    engines and many OpenAI-compatible servers ignore the field, and a client that asked for
    base64 (the Node SDK's default, the Python SDK's too) would decode floats' JSON as garbage."""
    want_base64 = encoding_format == "base64"
    for item in resp.data:
        vector = item.get("embedding")
        if want_base64 and isinstance(vector, list):
            item["embedding"] = embedding_base64(vector)
        elif not want_base64 and isinstance(vector, str):
            item["embedding"] = embedding_floats(vector)
    return resp


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    owned_by: str
    created: int = 0


class Capability(StrEnum):
    """What a backend can do for a model; the router matches requests against these."""

    CHAT = "chat"
    STREAM = "stream"
    EMBED = "embed"
    TOOLS = "tools"
    JSON_MODE = "json_mode"
    JSON_SCHEMA = "json_schema"
    VISION = "vision"
    LOGPROBS = "logprobs"
    REASONING = "reasoning"
    COMPLETIONS = "completions"
    """Legacy text completions (/v1/completions): a raw prompt, no chat template."""
    INSERT = "insert"
    """Fill-in-the-middle: a completion with a `suffix` (the model has FIM tokens)."""
    RERANK = "rerank"
    """Scoring documents against a query (/v1/rerank)."""


@dataclass(frozen=True, slots=True)
class Target:
    """One model at one provider: where a request may be sent."""

    provider: str
    model: str


@dataclass(frozen=True, slots=True)
class Route:
    """What a request's `model` resolved to: its targets in fallback order."""

    requested: str
    targets: tuple[Target, ...]
    alias: str | None = None


@dataclass(frozen=True, slots=True)
class Price:
    """What a model costs, in USD per million tokens."""

    input: float
    """USD per million prompt tokens."""
    output: float
    """USD per million completion tokens."""
