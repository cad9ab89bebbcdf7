"""OpenAI wire format <-> Gemini generateContent / batchEmbedContents. Pure functions.

Chat request fields (the OpenAI body):
  mapped   messages: system/developer -> systemInstruction (hoisted, in order); assistant -> role
           "model"; consecutive turns of one role merged; text, image_url (data: URL -> inlineData,
           http(s) -> fileData with a guessed mimeType; input_audio / file parts are refused);
           assistant tool_calls / function_call -> functionCall parts (arguments parsed to an
           object, the first of a turn marked with Gemini's documented "skip validator" thought
           signature, since replayed history has none); tool / function messages -> user
           functionResponse parts (name from the earlier tool call; response = the JSON object
           the content holds, else {"content": text}).
           tools / functions -> tools[{functionDeclarations}] (JSON schema reduced to Gemini's
           OpenAPI subset: additionalProperties, $schema, strict... dropped; see gemini_parts);
           tool_choice / function_call -> toolConfig.functionCallingConfig (auto AUTO, none NONE,
           required ANY, a named function ANY + allowedFunctionNames);
           response_format json_object -> responseMimeType application/json, json_schema ->
           + responseSchema; stop -> stopSequences; max_tokens / max_completion_tokens ->
           maxOutputTokens; temperature; top_p -> topP; top_k -> topK; seed; presence_penalty /
           frequency_penalty -> presencePenalty / frequencyPenalty; n -> candidateCount;
           reasoning_effort -> thinkingConfig (thinkingBudget: 0 for "none", else the effort's
           budget; includeThoughts); another dialect's reasoning hint the same, but never 0 and
           at most HINT_BUDGET.
  dropped  pure hints that do not change the output: user, stream_options, service_tier,
           parallel_tool_calls, store, metadata, a message's `name`, an image's `detail`.
  refused  (CapabilityError naming the field) logit_bias, logprobs, top_logprobs, and any other
           field set to a non-null value: its effect could not be reproduced.
Responses: thought parts -> reasoning_content (whole and as stream deltas).
Embeddings: input str | list[str] -> requests[].content, dimensions -> outputDimensionality,
  encoding_format dropped (the pipeline applies it for every target), user dropped;
  pre-tokenised inputs and other fields refused. Usage is estimated (about 4 characters a token).

Upstream bodies are untrusted: anything malformed becomes `UpstreamProtocolError` (a 502).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from aigw.domain import ChatChunk, ChatResponse, EmbedResponse, ModelInfo, Reasoning, Usage
from aigw.errors import CapabilityError, InvalidRequest, UpstreamProtocolError, UpstreamStatusError
from aigw.providers.gemini.parts import contents_from_messages, declarations, schema_to_gemini, tool_config
from aigw.providers.openai.wire import MAX_RETRY_AFTER_S, parse_retry_after
from aigw.providers.reasoning import requested

_HINTS = frozenset(
    {"user", "stream_options", "service_tier", "parallel_tool_calls", "store", "metadata", "prompt_cache_key"}
)
_MAPPED = frozenset(
    {
        "model", "messages", "stream", "temperature", "top_p", "top_k", "max_tokens",
        "max_completion_tokens", "stop", "seed", "presence_penalty", "frequency_penalty", "n",
        "tools", "tool_choice", "functions", "function_call", "response_format", "reasoning_effort",
    }
)  # fmt: skip
_REFUSED = ("logit_bias", "logprobs", "top_logprobs")
HINT_BUDGET = 24576
"""The most thinking a dialect's hint asks of Gemini (2.5 Flash's ceiling)."""
_CONFIG_KEYS = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("top_k", "topK"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
    ("n", "candidateCount"),
)
_FILTERED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"})
_SERVED_METHODS = frozenset({"generateContent", "batchEmbedContents", "embedContent"})
_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


# -- requests ---------------------------------------------------------------------------------


def _refuse(provider: str, param: str, what: str = "") -> CapabilityError:
    return CapabilityError(
        f"provider {provider!r} (gemini) does not support {what or repr(param)}", param=param
    )


def _response_format(provider: str, fmt: Any, config: dict[str, Any]) -> None:
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return
    if kind == "json_object":
        config["responseMimeType"] = "application/json"
    elif kind == "json_schema":
        spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest("response_format.json_schema needs a schema", param="response_format")
        config["responseMimeType"] = "application/json"
        config["responseSchema"] = schema_to_gemini(schema, "response_format")
    else:
        raise _refuse(provider, "response_format", f"response_format type {kind!r}")


def _thinking(body: dict[str, Any], hint: Reasoning | None) -> dict[str, Any] | None:
    """thinkingConfig for OpenAI's reasoning_effort as asked; for another dialect's hint only what
    every thinking model takes: no budget of 0 (which models that must think refuse), and at most
    HINT_BUDGET tokens (the smallest models' ceiling)."""
    reasoning = requested(body, hint)
    if reasoning is None:
        return None
    budget = reasoning.tokens
    if body.get("reasoning_effort") is None:
        if budget <= 0:
            return None
        budget = min(budget, HINT_BUDGET)
    return {"thinkingBudget": budget, "includeThoughts": budget > 0}


def chat_request_to_gemini(
    provider: str, body: dict[str, Any], hint: Reasoning | None = None
) -> dict[str, Any]:
    """A generateContent request body for an OpenAI chat body (the model goes in the URL);
    `hint` is another dialect's reasoning hint, used when the body has no reasoning_effort."""
    for key, value in body.items():
        if value is None or key in _HINTS:
            continue
        if key in _REFUSED:
            if value:
                raise _refuse(provider, key)
        elif key not in _MAPPED:
            raise _refuse(provider, key)
    system, contents = contents_from_messages(body["messages"])
    if not contents:
        raise CapabilityError("gemini needs at least one user or assistant message", param="messages")
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    decls = declarations(provider, body)
    if decls:
        out["tools"] = [{"functionDeclarations": decls}]
    choice = body.get("tool_choice", body.get("function_call"))
    if (tools_cfg := tool_config(choice, bool(decls))) is not None:
        out["toolConfig"] = tools_cfg
    config: dict[str, Any] = {gkey: body[okey] for okey, gkey in _CONFIG_KEYS if body.get(okey) is not None}
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    _response_format(provider, body.get("response_format"), config)
    if (thinking := _thinking(body, hint)) is not None:
        config["thinkingConfig"] = thinking
    if config:
        out["generationConfig"] = config
    return out


# -- responses --------------------------------------------------------------------------------


def _bad(provider: str, what: str) -> UpstreamProtocolError:
    return UpstreamProtocolError(f"{provider}: malformed response: {what}", provider=provider)


def _count(provider: str, value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(provider, f"a token count is {value!r:.40}")
    return int(value)


def usage_from_gemini(provider: str, u: Any) -> Usage | None:
    if u is None:
        return None
    if not isinstance(u, dict):
        raise _bad(provider, "usageMetadata is not an object")
    prompt = _count(provider, u.get("promptTokenCount"))
    thoughts = _count(provider, u.get("thoughtsTokenCount"))
    completion = _count(provider, u.get("candidatesTokenCount")) + thoughts
    total = _count(provider, u.get("totalTokenCount")) or prompt + completion
    extra: dict[str, Any] = {}
    if thoughts:
        extra["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    if cached := _count(provider, u.get("cachedContentTokenCount")):
        extra["prompt_tokens_details"] = {"cached_tokens": cached}
    return Usage(prompt, completion, total, extra)


def finish_reason(raw: Any, has_calls: bool) -> str | None:
    if not raw:
        return None
    if raw == "MAX_TOKENS":
        return "length"
    if raw in _FILTERED:
        return "content_filter"
    return "tool_calls" if has_calls else "stop"


class _Candidate(NamedTuple):
    position: int
    text: str
    thought: str
    calls: list[dict[str, Any]]
    raw_finish: Any


def _candidate(provider: str, c: Any, position: int, new_id: Callable[[], str]) -> _Candidate:
    """One candidate's text, thoughts, tool calls and raw finishReason."""
    if not isinstance(c, dict):
        raise _bad(provider, "a candidate is not an object")
    index = c.get("index", position)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 128:
        raise _bad(provider, "a candidate index is not a small integer")
    content = c.get("content") or {}
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(content, dict) or not isinstance(parts or [], list):
        raise _bad(provider, "candidate content is not an object with parts")
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for p in parts or []:
        if not isinstance(p, dict):
            raise _bad(provider, "a part is not an object")
        if "functionCall" in p:
            fc = p["functionCall"]
            if not isinstance(fc, dict) or not isinstance(fc.get("name"), str):
                raise _bad(provider, "functionCall has no name")
            args = fc.get("args") or {}
            if not isinstance(args, dict):
                raise _bad(provider, "functionCall args is not an object")
            fn = {"name": fc["name"], "arguments": orjson.dumps(args).decode()}
            calls.append({"id": new_id(), "type": "function", "function": fn})
        elif isinstance(p.get("text"), str):
            (thoughts if p.get("thought") else texts).append(p["text"])
    return _Candidate(index, "".join(texts), "".join(thoughts), calls, c.get("finishReason"))


def _candidates(provider: str, d: dict[str, Any]) -> list[Any]:
    cands = d.get("candidates")
    if cands is None:
        return []
    if not isinstance(cands, list):
        raise _bad(provider, "candidates is not a list")
    return cands


def _blocked(d: dict[str, Any]) -> bool:
    feedback = d.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def chat_id(d: dict[str, Any]) -> str:
    rid = d.get("responseId")
    return f"chatcmpl-{rid}" if isinstance(rid, str) and rid else f"chatcmpl-{uuid.uuid4().hex}"


def response_from_gemini(
    provider: str, model: str, d: dict[str, Any], *, created: int, new_id: Callable[[], str] = new_call_id
) -> ChatResponse:
    choices: list[dict[str, Any]] = []
    for position, c in enumerate(_candidates(provider, d)):
        index, text, thought, calls, raw = _candidate(provider, c, position, new_id)
        message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
        if thought:
            message["reasoning_content"] = thought
        if calls:
            message["tool_calls"] = calls
        reason = finish_reason(raw, bool(calls)) or ("tool_calls" if calls else "stop")
        choices.append({"index": index, "message": message, "finish_reason": reason, "logprobs": None})
    if not choices:
        if not _blocked(d):
            raise _bad(provider, "no candidates and no blockReason")
        message = {"role": "assistant", "content": ""}
        choices.append({"index": 0, "message": message, "finish_reason": "content_filter", "logprobs": None})
    version = d.get("modelVersion")
    return ChatResponse(
        id=chat_id(d),
        created=created,
        model=version if isinstance(version, str) and version else model,
        choices=choices,
        usage=usage_from_gemini(provider, d.get("usageMetadata")),
    )


class StreamTranslator:
    """streamGenerateContent SSE chunks (GenerateContentResponse objects) -> OpenAI chunks."""

    def __init__(
        self, provider: str, model: str, *, created: int, new_id: Callable[[], str] = new_call_id
    ) -> None:
        self._provider = provider
        self._model = model
        self._created = created
        self._new_id = new_id
        self._id = ""
        self._started: set[int] = set()
        self._calls: dict[int, int] = {}
        self._finished: set[int] = set()
        self._usage: Usage | None = None

    def _chunk(self, index: int, delta: dict[str, Any], reason: str | None) -> ChatChunk:
        choice = {"index": index, "delta": delta, "finish_reason": reason, "logprobs": None}
        return ChatChunk(id=self._id, created=self._created, model=self._model, choices=[choice])

    def _opening(self, index: int, delta: dict[str, Any]) -> dict[str, Any]:
        if index in self._started:
            return delta
        self._started.add(index)
        return {"role": "assistant", "content": delta.get("content", ""), **delta}

    def feed(self, d: dict[str, Any]) -> list[ChatChunk]:
        if "error" in d:
            raise error_from_object(self._provider, d["error"])
        if not self._id:  # the first event names the stream (and the model version) for good
            self._id = chat_id(d)
            if isinstance(d.get("modelVersion"), str) and d["modelVersion"]:
                self._model = d["modelVersion"]
        if (usage := usage_from_gemini(self._provider, d.get("usageMetadata"))) is not None:
            self._usage = usage
        out: list[ChatChunk] = []
        cands = _candidates(self._provider, d)
        if not cands and _blocked(d):
            if 0 not in self._started:
                out.append(self._chunk(0, self._opening(0, {}), None))
            out.append(self._chunk(0, {}, "content_filter"))
            self._finished.add(0)
        for position, c in enumerate(cands):
            index, text, thought, calls, raw = _candidate(self._provider, c, position, self._new_id)
            delta: dict[str, Any] = {"content": text} if text else {}
            if thought:
                delta["reasoning_content"] = thought
            if calls:
                first = self._calls.get(index, 0)
                delta["tool_calls"] = [{"index": first + n, **call} for n, call in enumerate(calls)]
                self._calls[index] = first + len(calls)
            if delta or index not in self._started:
                out.append(self._chunk(index, self._opening(index, delta), None))
            if (reason := finish_reason(raw, index in self._calls)) is not None:
                out.append(self._chunk(index, {}, reason))
                self._finished.add(index)
        return out

    def finish(self) -> list[ChatChunk]:
        """The closing usage-only chunk, or UpstreamProtocolError for a stream cut short."""
        if not self._finished:
            raise UpstreamProtocolError(
                f"{self._provider}: stream ended early (no finishReason)", provider=self._provider
            )
        if self._usage is None:
            return []
        return [
            ChatChunk(id=self._id, created=self._created, model=self._model, choices=[], usage=self._usage)
        ]


# -- models, embeddings, errors ---------------------------------------------------------------


def models_from_gemini(provider: str, d: dict[str, Any]) -> tuple[list[ModelInfo], str | None]:
    """The models of one page of GET /models, and the next page's token."""
    items = d.get("models", [])
    if not isinstance(items, list):
        raise _bad(provider, "models is not a list")
    out = []
    for m in items:
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not m["name"]:
            continue
        methods = m.get("supportedGenerationMethods")
        if isinstance(methods, list) and not _SERVED_METHODS.intersection(methods):
            continue  # image, video or question-answering models this provider cannot serve
        out.append(ModelInfo(m["name"].removeprefix("models/"), provider))
    token = d.get("nextPageToken")
    return out, token if isinstance(token, str) and token else None


def embed_request_to_gemini(provider: str, model: str, body: dict[str, Any]) -> dict[str, Any]:
    for key, value in body.items():
        if value is not None and key not in ("model", "input", "dimensions", "encoding_format", "user"):
            raise _refuse(provider, key)
    raw = body["input"]
    inputs = [raw] if isinstance(raw, str) else list(raw)
    if not all(isinstance(x, str) for x in inputs):
        raise _refuse(provider, "input", "pre-tokenised (integer) input")
    requests = []
    for text in inputs:
        req: dict[str, Any] = {"model": f"models/{model}", "content": {"parts": [{"text": text}]}}
        if body.get("dimensions") is not None:
            req["outputDimensionality"] = body["dimensions"]
        requests.append(req)
    return {"requests": requests}


def embed_response_from_gemini(
    provider: str, model: str, body: dict[str, Any], d: dict[str, Any]
) -> EmbedResponse:
    raw = body["input"]
    inputs = [raw] if isinstance(raw, str) else list(raw)
    items = d.get("embeddings")
    if not isinstance(items, list) or len(items) != len(inputs):
        raise _bad(provider, "embeddings do not match the inputs")
    data = []
    for i, e in enumerate(items):
        values = e.get("values") if isinstance(e, dict) else None
        if not isinstance(values, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values
        ):
            raise _bad(provider, "an embedding has no numeric values")
        data.append({"object": "embedding", "index": i, "embedding": values})
    tokens = sum(max(1, math.ceil(len(str(t)) / 4)) for t in inputs)
    return EmbedResponse(model=model, data=data, usage=Usage(tokens, 0, tokens))


def _retry_delay(details: Any) -> float | None:
    for det in details if isinstance(details, list) else []:
        if isinstance(det, dict) and str(det.get("@type", "")).endswith("google.rpc.RetryInfo"):
            m = _DELAY.match(str(det.get("retryDelay", "")))
            if m:
                return min(float(m.group(1)), MAX_RETRY_AFTER_S)
    return None


def _key_invalid(err: dict[str, Any]) -> bool:
    details = err.get("details")
    return any(
        isinstance(det, dict) and det.get("reason") == "API_KEY_INVALID"
        for det in (details if isinstance(details, list) else [])
    )


def error_from_object(
    provider: str, err: Any, status: int | None = None, retry_after: float | None = None
) -> UpstreamStatusError:
    """Map a Google error object ({code, message, status, details}) to an UpstreamStatusError."""
    e = err if isinstance(err, dict) else {}
    code = e.get("code")
    if status is None:
        status = code if isinstance(code, int) and 400 <= code <= 599 else 502
    message = str(e.get("message") or "") or f"HTTP {status}"
    kind = e.get("status") if isinstance(e.get("status"), str) else None
    upstream_status = status
    if _key_invalid(e):
        upstream_status = 401  # aigw's credentials, not the client's request, are at fault
    elif kind == "FAILED_PRECONDITION":
        upstream_status = 403  # the account (region, billing), not the request: another target may answer
    if status in (401, 403) or upstream_status == 401:
        message += f" (check the API key of providers.{provider})"
    return UpstreamStatusError(
        f"{provider} returned HTTP {status}: {message}",
        provider=provider,
        upstream_status=upstream_status,
        retry_after=retry_after if retry_after is not None else _retry_delay(e.get("details")),
        upstream_code=kind,
    )


def error_from_gemini(
    provider: str, status: int, body: bytes, retry_after: str | None
) -> UpstreamStatusError:
    """Map an HTTP error answer (status, body, Retry-After header) to an UpstreamStatusError."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and data:
        data = data[0]  # the JSON-array framing of non-SSE streams
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        text = body[:200].decode("utf-8", errors="replace").strip()
        err = {"message": text}
    return error_from_object(provider, err, status, parse_retry_after(retry_after))
