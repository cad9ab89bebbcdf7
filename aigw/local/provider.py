"""Local models behind the Provider seam: translation between OpenAI requests and the engine.

A local model honours exactly the request fields listed in `HONOURED`; anything else a client
sends is refused with a 400 naming it, never silently ignored (what Ollama users complain of).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

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
from aigw.engine.backend import Backend, GenParams, GenResult, LoadedModel, ModelSpec
from aigw.engine.engine import FOREVER, Engine, Job
from aigw.errors import CapabilityError, InvalidRequest, ModelNotFound, quoted
from aigw.local.config import LocalModelConfig, LocalProviderConfig, model_paths
from aigw.local.fingerprint import Fingerprints
from aigw.providers.spec import ProviderContext

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
        "tool_choice",
        "parallel_tool_calls",
        "logprobs",
    }
)
_SAMPLING_EXTRA = ("presence_penalty", "frequency_penalty", "top_k", "min_p", "repeat_penalty")
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_keep_alive(value: Any) -> float | None:
    """Ollama's keep_alive: seconds, or "30s"/"5m"/"1h"; negative keeps the model loaded."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidRequest('keep_alive must be a duration such as 300, "5m" or -1', param="keep_alive")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        raise InvalidRequest('keep_alive must be a duration such as 300, "5m" or -1', param="keep_alive")
    return FOREVER if seconds < 0 else seconds


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def gen_params(req: ChatRequest, model: str) -> GenParams:
    body = req.body
    for key in body:
        if key not in HONOURED:
            raise CapabilityError(
                f"Local model {quoted(model)} does not support {quoted(key)}", param=key[:100]
            )
    if (body.get("n") or 1) != 1:
        raise CapabilityError(f"Local model {quoted(model)} generates one choice at a time (n=1)", param="n")
    if body.get("logprobs"):
        raise CapabilityError(f"Local model {quoted(model)} does not return logprobs", param="logprobs")
    if body.get("tool_choice") not in (None, "none", "auto"):
        raise CapabilityError(f"Local model {quoted(model)} does not call tools", param="tool_choice")
    schema: dict[str, Any] | None = None
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        schema = {}
    elif fmt.get("type") == "json_schema":
        js = fmt.get("json_schema")
        schema = js.get("schema") if isinstance(js, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "response_format.json_schema.schema must be an object", param="response_format"
            )
    elif fmt.get("type") not in (None, "text"):
        raise CapabilityError(
            f"Local model {quoted(model)} does not support response_format {fmt.get('type')!r}",
            param="response_format",
        )
    return GenParams(
        max_tokens=req.max_tokens,
        temperature=0.8 if req.temperature is None else req.temperature,
        top_p=0.95 if req.top_p is None else req.top_p,
        stop=tuple(req.stop),
        seed=req.seed,
        json_schema=schema,
        extra={k: body[k] for k in _SAMPLING_EXTRA if body.get(k) is not None},
    )


def _messages(req: ChatRequest) -> list[dict[str, Any]]:
    return [{"role": m["role"], "content": _text(m.get("content"))} for m in req.messages]


class ModelKind(Protocol):
    """What a local provider needs of its type (`aigw.local.spec.LocalType`)."""

    @property
    def chat_caps(self) -> frozenset[Capability]: ...

    @property
    def embed_caps(self) -> frozenset[Capability]: ...

    def discover(self, models_dir: Path) -> dict[str, Path]: ...


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
        for model, path in model_paths(config, ctx.paths.models_dir).items():
            entry = config.models[model]
            opts = entry if isinstance(entry, LocalModelConfig) else LocalModelConfig(path=entry)
            self._register(ModelSpec(model, path, opts.embedding, opts.context))
        self._fingerprints = Fingerprints()
        self.capabilities = kind.chat_caps | kind.embed_caps

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
                self._register(ModelSpec(name, path))

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

    def capabilities_for(self, model: str) -> frozenset[Capability]:
        spec = self._specs.get(model)
        if spec is None:
            return self.capabilities
        return self._kind.embed_caps if spec.embedding else self._kind.chat_caps

    async def list_models(self) -> list[ModelInfo]:
        self._discover()
        return [
            ModelInfo(m, self.name, int(s.path.stat().st_mtime))
            for m, s in self._specs.items()
            if s.path.exists()
        ]

    async def _submit(self, req: ChatRequest) -> tuple[Job[GenResult], str]:
        spec = self._spec(req.model)
        params = gen_params(req, req.model)
        messages = _messages(req)
        keep_alive = parse_keep_alive(req.body.get("keep_alive"))

        def run(model: LoadedModel, job: Job[GenResult]) -> GenResult:
            return model.generate(messages, params, job.emit)

        job = await self.engine.submit(self._key(spec.name), run, keep_alive)
        return job, f"chatcmpl-{uuid.uuid4().hex[:24]}"

    async def chat(self, req: ChatRequest) -> ChatResponse:
        job, cid = await self._submit(req)
        result = await job.wait()
        message = {"role": "assistant", "content": result.text}
        choice = {"index": 0, "message": message, "finish_reason": result.finish_reason, "logprobs": None}
        return ChatResponse(cid, int(time.time()), req.model, [choice], _usage(result))

    async def stream_chat(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        job, cid = await self._submit(req)
        created = int(time.time())
        first = True
        async for text in job.items():
            delta = {"role": "assistant", "content": text} if first else {"content": text}
            first = False
            yield ChatChunk(cid, created, req.model, [{"index": 0, "delta": delta, "finish_reason": None}])
        result = job.result()
        final: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
        yield ChatChunk(
            cid, created, req.model, [{"index": 0, "delta": final, "finish_reason": result.finish_reason}]
        )
        yield ChatChunk(cid, created, req.model, [], usage=_usage(result))

    async def count_tokens(self, req: ChatRequest) -> int:
        """The prompt's exact tokens, by the model's own tokenizer and chat template (the model is
        loaded for it, as for a request)."""
        spec = self._spec(req.model)
        messages = _messages(req)

        def run(model: LoadedModel, job: Job[int]) -> int:
            return model.count_prompt(messages)

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


def _usage(result: GenResult) -> Usage:
    return Usage(
        result.prompt_tokens, result.completion_tokens, result.prompt_tokens + result.completion_tokens
    )
