"""Local models behind the Provider seam: translation between OpenAI requests and the engine.

A local model honours exactly the request fields listed in `HONOURED`; anything else a client
sends is refused with a 400 naming it, never silently ignored (what Ollama users complain of).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from aigw.completion import CompletionRequest
from aigw.domain import (
    Capability,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    ModelInfo,
    Usage,
)
from aigw.engine.backend import Backend, GenParams, GenResult, LoadedModel, ModelCard, ModelSpec, Pending
from aigw.engine.engine import Engine, Job
from aigw.errors import CapabilityError, InvalidRequest, ModelNotFound, quoted
from aigw.local.completing import Completer
from aigw.local.config import LocalModelConfig, LocalProviderConfig, model_paths, under
from aigw.local.constrain import json_grammar
from aigw.local.fingerprint import Fingerprints
from aigw.local.images import image_urls, load_images
from aigw.local.presets import Preset, load_presets
from aigw.local.sampling import cache_key, parse_keep_alive, refuse_unhonoured, sampling_extra, usage_of
from aigw.local.shape import Shaper
from aigw.local.tools import forced_call_schema, tool_names
from aigw.providers.reasoning import requested
from aigw.providers.spec import ProviderContext

log = logging.getLogger("aigw.local")
HONOURED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "response_format",
        "user",
        "keep_alive",
        "n",
        "presence_penalty",
        "frequency_penalty",
        "top_k",
        "min_p",
        "repeat_penalty",
        "tools",
        "tool_choice",
        "reasoning_effort",
        "parallel_tool_calls",
        "logprobs",
        "prompt_cache_key",
    }
)


def gen_params(req: ChatRequest, model: str) -> GenParams:
    body = req.body
    refuse_unhonoured(body, HONOURED, model)
    if (body.get("n") or 1) != 1:
        raise CapabilityError(f"Local model {quoted(model)} generates one choice at a time (n=1)", param="n")
    if body.get("logprobs"):
        raise CapabilityError(f"Local model {quoted(model)} does not return logprobs", param="logprobs")
    grammar = _format_grammar(body, model)
    tools = body.get("tools") or None
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequest("tools must be an array", param="tools")
    if forced(body):
        if tools is None:
            raise InvalidRequest("tool_choice forces a call, but there are no tools", param="tool_choice")
        if grammar is not None:
            raise CapabilityError(
                "Local models cannot force a tool call and a response_format at once", param="tool_choice"
            )
        grammar = json_grammar(forced_call_schema(tools, body["tool_choice"]), "tools")
    return GenParams(
        max_tokens=req.max_tokens,
        temperature=0.8 if req.temperature is None else req.temperature,
        top_p=0.95 if req.top_p is None else req.top_p,
        stop=tuple(req.stop),
        seed=req.seed,
        grammar=grammar,
        extra=sampling_extra(body),
        tools=tools,
        reasoning=requested(body, req.hint),
        reasoning_required=body.get("reasoning_effort") is not None,
        cache_key=cache_key(body),
    )


def auto_tools(body: dict[str, Any]) -> bool:
    """The model may call the request's tools or answer (tool_choice auto, the default)."""
    return bool(body.get("tools")) and body.get("tool_choice") in (None, "auto")


def forced(body: dict[str, Any]) -> bool:
    """The request forces a tool call (tool_choice "required" or a named function)."""
    choice = body.get("tool_choice")
    return choice == "required" or isinstance(choice, dict)


def _format_grammar(body: dict[str, Any], model: str) -> str | None:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        return json_grammar({}, "response_format")
    if fmt.get("type") == "json_schema":
        js = fmt.get("json_schema")
        schema = js.get("schema") if isinstance(js, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "response_format.json_schema.schema must be an object", param="response_format"
            )
        return json_grammar(schema, "response_format")
    if fmt.get("type") not in (None, "text"):
        raise CapabilityError(
            f"Local model {quoted(model)} does not support response_format {fmt.get('type')!r}",
            param="response_format",
        )
    return None


class ModelKind(Protocol):
    """What a local provider needs of its type (`aigw.local.spec.LocalType`)."""

    @property
    def chat_caps(self) -> frozenset[Capability]: ...

    @property
    def embed_caps(self) -> frozenset[Capability]: ...

    def discover(self, models_dir: Path) -> dict[str, Path]: ...

    def card(self, path: Path, models_dir: Path | None) -> ModelCard: ...

    def describe(self, path: Path, presets: Sequence[Preset] = ()) -> dict[str, Any]: ...

    def companion(self, path: Path) -> Path | None: ...


class LocalProvider:
    """A `llama_cpp` or `mlx` provider: the models of one config table, run by the shared engine."""

    def __init__(
        self,
        name: str,
        config: LocalProviderConfig,
        ctx: ProviderContext,
        *,
        kind: ModelKind,
        backend: Backend,
    ) -> None:
        self.name = name
        self.engine: Engine = ctx.engine
        self._kind = kind
        self._backend = backend
        self._specs: dict[str, ModelSpec] = {}
        self._models_dir = ctx.paths.models_dir if config.discover_models else None
        self._parallel = config.parallel
        for model, path in model_paths(config, ctx.paths.models_dir).items():
            entry = config.models[model]
            opts = entry if isinstance(entry, LocalModelConfig) else LocalModelConfig(path=entry)
            mmproj = under(ctx.paths.models_dir, opts.mmproj) if opts.mmproj else kind.companion(path)
            parallel = opts.parallel or config.parallel
            self._register(ModelSpec(model, path, opts.embedding, opts.context, mmproj, parallel))
        self._fingerprints = Fingerprints()
        self._presets_dir = ctx.paths.models_dir
        self._image_dirs = tuple(Path(os.path.realpath(Path(d).expanduser())) for d in ctx.local.image_dirs)
        self._cards: dict[str, tuple[int, ModelCard | None]] = {}
        self._described: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}
        self.capabilities = kind.chat_caps | kind.embed_caps | {Capability.REASONING, Capability.INSERT}
        self._completer = Completer(self.engine, lambda model: self._key(self._spec(model).name))

    def _register(self, spec: ModelSpec) -> None:
        self._specs[spec.name] = spec
        self.engine.register(self._key(spec.name), spec, self._backend)

    def _key(self, model: str) -> str:
        return f"{self.name}/{model}"

    def _discover(self) -> None:
        """Serve the models dir's models of this kind too (what `aigw models pull` puts there)."""
        if self._models_dir is None or not self._models_dir.is_dir():
            return
        for name, path in self._kind.discover(self._models_dir).items():
            if name not in self._specs:
                spec = ModelSpec(name, path, mmproj=self._kind.companion(path), parallel=self._parallel)
                self._register(spec)

    def _spec(self, model: str) -> ModelSpec:
        if model not in self._specs:
            self._discover()
        spec = self._specs.get(model)
        if spec is None:
            known = ", ".join(sorted(self._specs)) or "none configured"
            raise ModelNotFound(f"{self.name} has no model {quoted(model)} (known: {known})", param="model")
        return spec

    def fingerprint(self, model: str) -> str | None:
        """Identifies the weights a model name serves now (for cache keys); None if unknown."""
        spec = self._specs.get(model)
        return None if spec is None else self._fingerprints.of(spec.path)

    def describe_model(self, model: str) -> dict[str, Any] | None:
        """What `aigw models show` prints of a model (its files read, nothing loaded) and its
        fingerprint; None when it has no readable files. Reads files: call it off the event loop."""
        spec = self._specs.get(model)
        if spec is None:
            return None
        try:
            st = spec.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            cached = self._described.get(model)
            if cached is not None and cached[0] == stamp:
                return cached[1]  # polled often (Open WebUI): read again only when the files change
            info = self._kind.describe(spec.path, load_presets(self._presets_dir))
        except Exception:  # a model being pulled or a broken file: nothing to show
            return None
        described = {**info, "fingerprint": self._fingerprints.of(spec.path)}
        self._described[model] = (stamp, described)
        return described

    def capabilities_for(self, model: str) -> frozenset[Capability]:
        spec = self._specs.get(model)
        if spec is None:
            return self.capabilities
        if spec.embedding:
            return self._kind.embed_caps
        card = self._card(spec)
        caps = card.capabilities if card is not None else self._kind.chat_caps
        return caps | {Capability.VISION} if spec.mmproj is not None else caps

    def context_length(self, model: str) -> int | None:
        spec = self._specs.get(model)
        if spec is None or spec.embedding:
            return None
        card = self._card(spec)
        return spec.context or (card.context_length if card is not None else None)

    def _card(self, spec: ModelSpec) -> ModelCard | None:
        """The model's card, read again only when its files change; None when they are unreadable
        (a model being pulled, say)."""
        try:
            stamp = spec.path.stat().st_mtime_ns
        except OSError:
            return None
        cached = self._cards.get(spec.name)
        if cached is None or cached[0] != stamp:
            try:
                card: ModelCard | None = self._kind.card(spec.path, self._presets_dir)
            except Exception as e:  # any file may sit in the models dir: it must not break listings
                log.warning("cannot read %s (%s); listed with the engine's defaults", spec.path, e)
                card = None
            cached = (stamp, card)
            self._cards[spec.name] = cached
        return cached[1]

    async def list_models(self) -> list[ModelInfo]:
        self._discover()
        return [
            ModelInfo(m, self.name, int(s.path.stat().st_mtime))
            for m, s in self._specs.items()
            if s.path.exists()
        ]

    async def _submit(self, req: ChatRequest) -> tuple[Job[GenResult], str, Shaper]:
        """The generation's job, the answer's id, and its shaper (told the loaded model's output
        format before any text comes)."""
        spec = self._spec(req.model)
        params = replace(gen_params(req, req.model), images=await self._images(req))
        messages = req.messages
        keep_alive = parse_keep_alive(req.body.get("keep_alive"))
        shaper = Shaper(
            forced=forced(req.body),
            auto=auto_tools(req.body),
            constrained=params.grammar is not None,
            tools=tool_names(req.body.get("tools")),
        )

        def run(model: LoadedModel, job: Job[GenResult]) -> Pending:
            fmt = model.output_format()
            if shaper.auto and fmt.tools is None:
                raise CapabilityError(
                    f"Local model {quoted(req.model)} is of no family whose tool calls aigw can parse: "
                    'use tool_choice "required" or a named function (constrained decoding makes the call)',
                    param="tool_choice",
                )
            shaper.begin(fmt)
            return model.begin(messages, params, job.emit, lambda: not job.cancelled)

        started = time.perf_counter()
        job = await self.engine.submit(self._key(spec.name), run, keep_alive)
        job.waited_s = time.perf_counter() - started  # loading the model, when it was not loaded
        return job, f"chatcmpl-{uuid.uuid4().hex[:24]}", shaper

    async def _images(self, req: ChatRequest) -> tuple[bytes, ...]:
        """The request's images, read and checked off the event loop (none: no work at all)."""
        if not image_urls(req.messages):
            return ()
        return await asyncio.to_thread(load_images, req.messages, self._image_dirs)

    async def chat(self, req: ChatRequest) -> ChatResponse:
        job, cid, shaper = await self._submit(req)
        result = await job.wait()
        message, finish = shaper.message(result.text, result.finish_reason)
        choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        return ChatResponse(cid, int(time.time()), req.model, [choice], usage_of(result, job.waited_s))

    async def stream_chat(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        job, cid, shaper = await self._submit(req)
        created = int(time.time())
        opened = False

        def chunk(delta: dict[str, Any], finish: str | None = None) -> ChatChunk:
            nonlocal opened
            if not opened:  # the first chunk carries the role, and comes with the first output
                role = {"role": "assistant", "content": None if shaper.forced else ""}
                delta, opened = {**role, **delta}, True
            return ChatChunk(cid, created, req.model, [{"index": 0, "delta": delta, "finish_reason": finish}])

        async for text in job.items():
            for delta in shaper.add(text):
                yield chunk(delta)
        result = job.result()
        for delta in shaper.finish():
            yield chunk(delta)
        yield chunk({}, shaper.finish_reason(result.finish_reason))
        yield ChatChunk(cid, created, req.model, [], usage=usage_of(result, job.waited_s))

    async def complete(self, req: CompletionRequest) -> ChatResponse:
        """A legacy text completion (raw, or fill-in-the-middle): aigw.local.completing."""
        return await self._completer.complete(req)

    def stream_complete(self, req: CompletionRequest) -> AsyncIterator[ChatChunk]:
        return self._completer.stream(req)

    async def count_tokens(self, req: ChatRequest) -> int:
        """The prompt's exact tokens, by the model's own tokenizer and chat template (the model is
        loaded for it, as for a request)."""
        spec = self._spec(req.model)
        messages = req.messages
        tools = req.body.get("tools") or None
        images = await self._images(req)
        reasoning = requested(req.body, req.hint)

        def run(model: LoadedModel, job: Job[int]) -> int:
            return model.count_prompt(messages, tools, images, reasoning)

        job = await self.engine.submit(self._key(spec.name), run)
        return await job.wait()

    async def embed(self, req: EmbedRequest) -> EmbedResponse:
        spec = self._spec(req.model)
        texts = req.inputs
        if not all(isinstance(t, str) for t in texts):
            raise InvalidRequest("Local embedding models take text input, not token arrays", param="input")

        def run(model: LoadedModel, job: Job[tuple[list[list[float]], int]]) -> tuple[list[list[float]], int]:
            return model.embed(list(texts))

        job = await self.engine.submit(self._key(spec.name), run)
        vectors, tokens = await job.wait()
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        return EmbedResponse(req.model, data, Usage(tokens, 0, tokens))

    async def aclose(self) -> None:
        pass  # the engine, shared by every local provider, is closed by the gateway
