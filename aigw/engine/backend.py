"""What a local inference library must provide to the engine (llama.cpp, MLX). No heavy imports.

Everything here runs on a model's owner thread, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from aigw.domain import Capability, Reasoning


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    path: Path
    embedding: bool = False
    context: int | None = None
    mmproj: Path | None = None
    """A vision projector (a llama.cpp mmproj GGUF): the model then takes images."""
    parallel: int | None = None
    """Slots: requests decoded together in one batch (None: the backend chooses from memory)."""


@dataclass(frozen=True, slots=True)
class ModelCard:
    """What a model can do, read from its files (nothing loaded): for /v1/models."""

    capabilities: frozenset[Capability]
    context_length: int | None
    """The context aigw serves it with, unless its config sets one."""


@dataclass(frozen=True, slots=True)
class GenParams:
    max_tokens: int | None
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None
    grammar: str | None = None
    """What the output must match (llguidance's grammar: see aigw.local.constrain)."""
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific sampling knobs
    tools: list[dict[str, Any]] | None = None
    """The request's tools, for a chat template that renders them."""
    reasoning: Reasoning | None = None
    """The reasoning asked for, for a chat template with a control for it."""
    reasoning_required: bool = False
    """It was OpenAI's own reasoning_effort (refused if the template has no control), not a hint."""
    images: tuple[bytes, ...] = ()
    """The messages' images, in order (read and checked by the provider)."""
    cache_key: str | None = None
    """The caller's prompt_cache_key: its conversation's saved prompt state is its own."""


@dataclass(frozen=True, slots=True)
class TextPrompt:
    """A legacy completion's prompt, fed to the model as it is (no chat template)."""

    text: str | None = None
    """The text to continue (special tokens written in it are read as such)."""
    tokens: tuple[int, ...] | None = None
    """Token ids of the model's vocabulary, instead of `text`."""
    suffix: str | None = None
    """Fill-in-the-middle: the text after the gap; `text` is before it. The prompt is then built
    with the model's own FIM tokens."""


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """How a loaded model writes its answer besides plain text."""

    tools: str | None = None
    """Its family's tool-call format (aigw.local.toolparse), None if unknown."""
    think: bool = False
    """It writes its reasoning in <think> tags."""
    opened: bool = False
    """Its generation prompt opens the <think> block itself."""


@dataclass(frozen=True, slots=True)
class GenResult:
    text: str
    finish_reason: str  # stop | length
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    """Prompt tokens not read again: the model's state from an earlier request covered them."""
    prefill_s: float = 0.0
    """Seconds from the start of the run to the first generated token (reading the prompt)."""
    decode_s: float = 0.0
    """Seconds from the first generated token to the last."""


@runtime_checkable
class Pending(Protocol):
    """A generation a batching model has started (`LoadedModel.begin`); its model's `step` runs
    it, with the others, until it is done."""

    @property
    def done(self) -> bool: ...

    def outcome(self) -> GenResult:
        """The result once done; raises what made it fail."""
        ...


@dataclass(frozen=True, slots=True)
class Finished:
    """A generation that ran to its end when it began (a model that does not batch)."""

    result: GenResult
    done: bool = True

    def outcome(self) -> GenResult:
        return self.result


# Called on the owner thread with each piece of text as it is produced; returns False to stop
# (the client went away): the backend must then end generation before the next token.
Emit = Callable[[str], bool]


class LoadedModel(Protocol):
    def capabilities(self) -> frozenset[Capability]: ...

    def generate(self, messages: list[dict[str, Any]], params: GenParams, emit: Emit) -> GenResult:
        """`messages` are OpenAI chat messages (tool calls and results included)."""
        ...

    def begin(
        self, messages: list[dict[str, Any]], params: GenParams, emit: Emit, alive: Callable[[], bool]
    ) -> Pending:
        """Start a generation; a batching model runs it in `step`s together with the others
        (`alive` turning false ends it at the next step), any other runs it to its end here."""
        ...

    def begin_text(
        self, prompt: TextPrompt, params: GenParams, emit: Emit, alive: Callable[[], bool]
    ) -> Pending:
        """Start a legacy completion of `prompt` (raw, or fill-in-the-middle), as `begin` does; a
        CapabilityError when the model cannot (no FIM tokens for a suffix, an embedding model)."""
        ...

    def step(self) -> None:
        """Advance every started generation by one step (nothing for a model that does not batch)."""
        ...

    def cache_bytes(self) -> int:
        """Memory held by saved prompt states, beyond the estimate the model was loaded with."""
        ...

    def drop_cache(self) -> int:
        """Forget saved prompt states; the bytes freed. Safe from any thread (the engine calls it
        from the event loop to make room, and on the owner thread under memory pressure)."""
        ...

    def slots(self) -> tuple[int, int] | None:
        """(slots, slots in use) of a batching model, read from any thread; None: one at a time."""
        ...

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]: ...

    def count_prompt(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        images: tuple[bytes, ...] = (),
        reasoning: Reasoning | None = None,
    ) -> int:
        """The tokens of the prompt these messages make, as `generate` would feed the model (the
        reasoning asked for goes to the chat template as it would for the answer)."""
        ...

    def output_format(self) -> OutputFormat:
        """How the model writes tool calls and reasoning (from its family's preset)."""
        ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """A local inference library."""

    def estimate_bytes(self, spec: ModelSpec) -> int:
        """Memory the model will hold once loaded (weights plus context), before loading it."""
        ...

    def load(self, spec: ModelSpec) -> LoadedModel: ...
