"""Ollama's /api/chat and /api/generate bodies as the pipeline's chat body.

  mapped   model (`name:tag`), messages (images as data: URLs, tool_calls with object arguments,
           `tool` results matched to their call), tools, format ("json" or a JSON schema ->
           response_format), options temperature, top_p, top_k, min_p, seed, num_predict
           (-> max_tokens), stop, repeat_penalty, presence_penalty, frequency_penalty;
           keep_alive; stream (default true); think (-> the reasoning hint); generate's prompt,
           system and images.
  dropped  named in `x-aigw-dropped`: options aigw cannot apply per request (num_ctx, num_thread,
           mirostat, ...), and top-level fields it does not know (Ollama ignores them too).
  refused  a 400: `template` (a Go template: aigw renders the model's own chat template);
           images with a raw prompt or a suffix; malformed messages.

/api/generate with `raw: true` or a `suffix` is a legacy completion instead (`generate_to_completion`):
the prompt as it is, or fill-in-the-middle with the model's own FIM tokens.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

import orjson

from aigw.api.translation import Translated, bad
from aigw.domain import EFFORTS, Reasoning
from aigw.errors import CapabilityError, InvalidRequest

_CHAT = frozenset({"model", "messages", "tools", "format", "options", "stream", "keep_alive", "think"})
_GENERATE = frozenset(
    {"model", "prompt", "suffix", "images", "format", "options", "system", "template", "stream", "raw",
     "keep_alive", "context", "think"}
)  # fmt: skip
_OPTIONS = frozenset({
    "temperature", "top_p", "top_k", "min_p", "seed", "stop", "repeat_penalty", "presence_penalty",
    "frequency_penalty",
})  # fmt: skip
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = MappingProxyType({"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0})
_IMAGE_TYPES = (("iVBOR", "image/png"), ("/9j/", "image/jpeg"), ("R0lG", "image/gif"), ("UklG", "image/webp"))


def model_of(raw: dict[str, Any]) -> str:
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model is required", param="model")
    return model


def streams(raw: dict[str, Any]) -> bool:
    return raw.get("stream") is not False  # Ollama streams unless told not to


def _start(raw: dict[str, Any], known: frozenset[str]) -> Translated:
    out = Translated({"model": model_of(raw)})
    for name in raw:
        if name not in known:
            out.drop(name)
    out.body["stream"] = streams(raw)
    if out.body["stream"]:
        out.body["stream_options"] = {"include_usage": True}
    _options(raw.get("options"), out)
    _format(raw.get("format"), out.body)
    out.hint = _think(raw.get("think"))
    return out  # keep_alive goes to local models only (the route decides: cloud APIs refuse it)


def _options(options: Any, out: Translated) -> None:
    if options is None:
        return
    if not isinstance(options, dict):
        raise bad("expected an object", "options")
    for name, value in options.items():
        if value is None:
            continue
        if name in _OPTIONS:
            out.body[name] = value
        elif name == "num_predict":
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad("expected an integer", "options.num_predict")
            if value > 0:  # -1 (until done) and -2 (fill the context) set no limit
                out.body["max_tokens"] = value
        else:
            out.drop(f"options.{name}")
    stop = out.body.get("stop")
    if isinstance(stop, str):
        out.body["stop"] = [stop]


def _format(fmt: Any, body: dict[str, Any]) -> None:
    if fmt is None or fmt == "":
        return
    if fmt == "json":
        body["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "format", "schema": fmt}}
    else:
        raise bad('expected "json" or a JSON schema', "format")


def _think(think: Any) -> Reasoning | None:
    if think is None:
        return None
    if think is True:
        return Reasoning("medium")
    if think is False:
        return Reasoning("none")
    if isinstance(think, str) and think in EFFORTS:
        return Reasoning(think)
    raise bad("expected true, false, or low, medium or high", "think")


def _images(images: Any, param: str) -> list[dict[str, Any]]:
    if images is None:
        return []
    if not isinstance(images, list) or not all(isinstance(i, str) and i for i in images):
        raise bad("expected an array of base64-encoded images", param)
    parts = []
    for data in images:
        kind = next((t for prefix, t in _IMAGE_TYPES if data.startswith(prefix)), "image/png")
        parts.append({"type": "image_url", "image_url": {"url": f"data:{kind};base64,{data}"}})
    return parts


def _content(text: Any, images: Any, param: str) -> str | list[dict[str, Any]]:
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise bad("expected a string", f"{param}.content")
    parts = _images(images, f"{param}.images")
    return [{"type": "text", "text": text}, *parts] if parts else text


def _messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise bad("expected an array of messages", "messages")
    out: list[dict[str, Any]] = []
    unanswered: list[tuple[str, str]] = []  # (call id, tool name) of calls awaiting a result
    for i, m in enumerate(raw):
        param = f"messages[{i}]"
        given = m.get("role") if isinstance(m, dict) else None
        role = given.lower() if isinstance(given, str) else None
        if role not in ("system", "user", "assistant", "tool"):
            raise bad("expected a message with role system, user, assistant or tool", param)
        if role == "tool":
            cid, name = m.get("tool_call_id"), m.get("tool_name") or m.get("name")
            match = next((c for c in unanswered if c[0] == cid), None) or next(
                (c for c in unanswered if c[1] == name), unanswered[0] if unanswered else None
            )
            if match is None:
                raise bad("a tool result without a tool call before it", param)
            unanswered.remove(match)
            content = _content(m.get("content"), None, param)
            out.append({"role": "tool", "tool_call_id": match[0], "content": content})
            continue
        msg: dict[str, Any] = {"role": role, "content": _content(m.get("content"), m.get("images"), param)}
        if role == "assistant" and m.get("tool_calls"):
            unanswered.clear()  # a new turn's calls: the earlier ones were answered or abandoned
            msg["tool_calls"] = _calls(m["tool_calls"], param, len(out), unanswered)
        out.append(msg)
    return out


def _calls(calls: Any, param: str, at: int, unanswered: list[tuple[str, str]]) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise bad("expected an array", f"{param}.tool_calls")
    wire = []
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise bad("expected {function: {name, arguments}}", f"{param}.tool_calls[{j}]")
        args = fn.get("arguments") or {}
        text = args if isinstance(args, str) else orjson.dumps(args).decode()
        given = call.get("id")
        cid = given if isinstance(given, str) and given else f"call_{at}_{j}"
        unanswered.append((cid, fn["name"]))
        wire.append({"id": cid, "type": "function", "function": {"name": fn["name"], "arguments": text}})
    return wire


def chat_to_chat(raw: dict[str, Any]) -> Translated:
    """An /api/chat body as the chat body."""
    out = _start(raw, _CHAT)
    out.body["messages"] = _messages(raw.get("messages") or [])
    if raw.get("tools"):
        if not isinstance(raw["tools"], list):
            raise bad("expected an array", "tools")
        out.body["tools"] = raw["tools"]
    return out


def is_completion(raw: dict[str, Any]) -> bool:
    """/api/generate with a raw prompt or a suffix: a legacy completion, no chat template."""
    return raw.get("raw") is True or bool(raw.get("suffix"))


def _no_template(raw: dict[str, Any]) -> None:
    if raw.get("template"):
        raise CapabilityError(
            "template is not supported: aigw renders the model's own chat template (send raw: true "
            "with the prompt already formatted instead)",
            param="template",
        )


def generate_to_completion(raw: dict[str, Any]) -> Translated:
    """An /api/generate body with `raw` or `suffix` as a legacy completion body."""
    _no_template(raw)
    if raw.get("images"):
        why = "images need the chat template: send them without raw or suffix"
        raise CapabilityError(why, param="images")
    out = _start(raw, _GENERATE - {"context", "system", "think", "images", "template"})
    prompt = raw.get("prompt") or ""
    if not isinstance(prompt, str):
        raise bad("expected a string", "prompt")
    out.body["prompt"] = prompt
    suffix = raw.get("suffix")
    if suffix:
        if not isinstance(suffix, str):
            raise bad("expected a string", "suffix")
        out.body["suffix"] = suffix
    if "response_format" in out.body:
        raise CapabilityError("format needs the chat template: send it without raw or suffix", param="format")
    return out


def generate_to_chat(raw: dict[str, Any]) -> Translated:
    """An /api/generate body as the chat body: the prompt a user message, after the system one."""
    _no_template(raw)
    out = _start(raw, _GENERATE - {"context"})
    if raw.get("context") is not None:
        out.drop("context")
    prompt = raw.get("prompt") or ""
    if not isinstance(prompt, str):
        raise bad("expected a string", "prompt")
    messages: list[dict[str, Any]] = []
    if isinstance(raw.get("system"), str) and raw["system"]:
        messages.append({"role": "system", "content": raw["system"]})
    messages.append({"role": "user", "content": _content(prompt, raw.get("images"), "prompt")})
    out.body["messages"] = messages
    return out


def is_load_request(raw: dict[str, Any], key: str) -> bool:
    """An empty prompt (or no messages) loads a model, or with keep_alive 0 unloads it."""
    return not raw.get(key) and not raw.get("images")


def keep_alive_s(keep_alive: Any) -> float | None:
    """Ollama's keep_alive in seconds (a number, or "30s", "5m", "1h"); negative: forever
    (`inf`); None when not given; a 400 naming it when it is neither."""
    if keep_alive is None:
        return None
    if isinstance(keep_alive, bool):
        raise bad('expected a duration such as 300, "5m" or -1', "keep_alive")
    if isinstance(keep_alive, int | float):
        seconds = float(keep_alive)
    elif isinstance(keep_alive, str) and (m := _DURATION.match(keep_alive)):
        seconds = float(m.group(1)) * _UNIT[m.group(2) or "s"]
    else:
        raise bad('expected a duration such as 300, "5m" or -1', "keep_alive")
    return float("inf") if seconds < 0 else seconds
