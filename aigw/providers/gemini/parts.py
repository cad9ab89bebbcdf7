"""OpenAI messages and tools -> Gemini contents, functionDeclarations and Schema. Pure.

Messages: system/developer -> systemInstruction parts (hoisted, in order); user -> "user";
assistant -> "model"; consecutive turns of one role merged (Gemini wants them alternating);
text and image_url parts (data: URL -> inlineData, http(s) -> fileData with a guessed mimeType);
other part kinds (input_audio, file) refused. Assistant tool_calls / function_call ->
functionCall parts (arguments parsed to an object); the first of a turn carries Gemini's
documented "skip validator" thought signature, since history replayed by a client has none.
tool / function messages -> functionResponse parts in a user turn, named after the earlier
tool call; response = the JSON object the content holds, else {"content": text}.

JSON Schema -> Gemini's `Schema` (a subset of OpenAPI 3.0 that refuses keys it does not know):
local `$ref`s (`#/$defs/...`, `#/definitions/...`) inlined; `"type": [T, "null"]` -> `type` +
`nullable`; `oneOf` -> `anyOf`, a `null` variant -> `nullable`; `allOf` merged; `const` -> a
one-value `enum` (enum values as strings, as Gemini wants); `format` kept only where Gemini
honours it; `required` keeps only declared properties. Every other key (`additionalProperties`,
`$schema`, `$id`, `strict`, `prefixItems`, ...) is dropped. Schemas nesting deeper than a bound
(a recursive `$ref`) are refused.
"""

from __future__ import annotations

import mimetypes
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import orjson

from aigw.errors import CapabilityError, InvalidRequest

SKIP_SIGNATURE = "skip_thought_signature_validator"
_TOOL_MODES = MappingProxyType({"auto": "AUTO", "none": "NONE", "required": "ANY"})
_COPY = frozenset(
    {
        "title", "description", "minItems", "maxItems", "minLength", "maxLength", "pattern",
        "minProperties", "maxProperties", "minimum", "maximum", "default", "example", "propertyOrdering",
    }
)  # fmt: skip
_FORMATS = frozenset({"enum", "date-time", "float", "double", "int32", "int64"})
MAX_DEPTH = 40
# Schema nodes one reduction may produce: $refs expand inline, and a few kilobytes of
# definitions that each refer to the next several times would otherwise expand exponentially.
MAX_NODES = 5_000


class _Reducer:
    def __init__(self, defs: dict[str, Any], param: str) -> None:
        self.defs = defs
        self.param = param
        self.nodes = 0

    def refuse(self, why: str) -> CapabilityError:
        return CapabilityError(f"{self.param}: {why}", param=self.param)

    def reduce(self, s: Any, depth: int) -> dict[str, Any]:
        if not isinstance(s, dict):
            return {}
        if depth > MAX_DEPTH:
            raise self.refuse("the schema nests too deeply for gemini (a recursive $ref?)")
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.refuse(
                f"the schema expands to more than {MAX_NODES} nodes ($refs are inlined for gemini)"
            )
        ref = s.get("$ref")
        if isinstance(ref, str):
            prefix, _, name = ref.rpartition("/")
            if prefix not in ("#/$defs", "#/definitions") or not isinstance(self.defs.get(name), dict):
                raise self.refuse(f"unsupported $ref {ref!r}")
            return self.reduce({**self.defs[name], **{k: v for k, v in s.items() if k != "$ref"}}, depth + 1)
        out: dict[str, Any] = {k: v for k, v in s.items() if k in _COPY}
        if s.get("format") in _FORMATS:
            out["format"] = s["format"]
        if s.get("nullable") is True:
            out["nullable"] = True
        self._type(s.get("type"), out)
        self._variants(s, out, depth)
        all_of = s.get("allOf")
        for sub in all_of if isinstance(all_of, list) else []:
            self._merge(out, self.reduce(sub, depth + 1))
        self._enum(s, out)
        if isinstance(s.get("properties"), dict):
            props = {str(k): self.reduce(v, depth + 1) for k, v in s["properties"].items()}
            self._merge(out, {"properties": props})
        if isinstance(s.get("required"), list):
            self._merge(out, {"required": [r for r in s["required"] if isinstance(r, str)]})
        if "required" in out:
            known = out.get("properties", {})
            out["required"] = [r for r in dict.fromkeys(out["required"]) if r in known]
        if isinstance(s.get("items"), dict):
            out["items"] = self.reduce(s["items"], depth + 1)
        return out

    @staticmethod
    def _type(kind: Any, out: dict[str, Any]) -> None:
        if isinstance(kind, list):
            kinds = [k for k in kind if isinstance(k, str) and k != "null"]
            if "null" in kind:
                out["nullable"] = True
            if len(kinds) > 1:
                out["anyOf"] = [{"type": k} for k in kinds]
            kind = kinds[0] if len(kinds) == 1 else None
        if isinstance(kind, str) and kind != "null":
            out["type"] = kind

    def _variants(self, s: dict[str, Any], out: dict[str, Any], depth: int) -> None:
        variants = s.get("anyOf") if isinstance(s.get("anyOf"), list) else s.get("oneOf")
        if not isinstance(variants, list):
            return
        subs = []
        for v in variants:
            if isinstance(v, dict) and v.get("type") == "null":
                out["nullable"] = True
            else:
                subs.append(self.reduce(v, depth + 1))
        if len(subs) == 1 and "type" not in out:  # Optional[X]: X, nullable
            out.update({k: v for k, v in subs[0].items() if k not in out})
        elif subs:
            out["anyOf"] = subs

    @staticmethod
    def _enum(s: dict[str, Any], out: dict[str, Any]) -> None:
        values = [s["const"]] if "const" in s else s.get("enum")
        if not isinstance(values, list):
            return
        if None in values:
            out["nullable"] = True
        out["enum"] = [v if isinstance(v, str) else orjson.dumps(v).decode() for v in values if v is not None]
        out.setdefault("type", "string")

    @staticmethod
    def _merge(out: dict[str, Any], extra: dict[str, Any]) -> None:
        for k, v in extra.items():
            if k == "properties":
                out["properties"] = {**out.get("properties", {}), **v}
            elif k == "required":
                out["required"] = [*out.get("required", []), *v]
            else:
                out.setdefault(k, v)


def schema_to_gemini(schema: dict[str, Any], param: str) -> dict[str, Any]:
    """`schema` reduced to what Gemini's Schema accepts; CapabilityError (naming `param`) if it cannot be."""
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        if isinstance(schema.get(key), dict):
            defs.update(schema[key])
    return _Reducer(defs, param).reduce(schema, 0)


def _bad_msg(i: int, why: str) -> InvalidRequest:
    return InvalidRequest(f"messages[{i}]: {why}", param="messages")


def _image_part(p: dict[str, Any], i: int) -> dict[str, Any]:
    spec = p.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str):
        raise _bad_msg(i, "image_url needs a url")
    if url.startswith("data:"):
        head, sep, data = url[5:].partition(",")
        params = head.split(";")
        if not sep or "base64" not in params[1:]:
            raise _bad_msg(i, "a data: URL must be base64-encoded")
        return {"inlineData": {"mimeType": params[0] or "image/png", "data": data}}
    if url.startswith(("http://", "https://")):
        mime = mimetypes.guess_type(urlsplit(url).path)[0] or "image/jpeg"
        return {"fileData": {"fileUri": url, "mimeType": mime}}
    raise _bad_msg(i, "an image URL must be http(s) or a data: URL")


def _parts(content: Any, i: int, *, text_only: bool = False) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise _bad_msg(i, "content must be a string or a list of parts")
    out: list[dict[str, Any]] = []
    for p in content:
        if not isinstance(p, dict):
            raise _bad_msg(i, "a content part must be an object")
        kind = p.get("type")
        if kind in ("text", "refusal"):
            text = p.get(kind)
            if not isinstance(text, str):
                raise _bad_msg(i, f"a {kind} part needs {kind!r}")
            if text:
                out.append({"text": text})
        elif kind == "image_url" and not text_only:
            out.append(_image_part(p, i))
        else:
            raise CapabilityError(f"messages[{i}]: gemini cannot take a {kind!r} part here", param="messages")
    return out


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _call_part(fn: Any, i: int) -> tuple[str, dict[str, Any]]:
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise _bad_msg(i, "a tool call needs a function name")
    raw = fn.get("arguments") or "{}"
    try:
        args = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        raise _bad_msg(i, "tool call arguments are not valid JSON") from None
    if not isinstance(args, dict):
        raise _bad_msg(i, "tool call arguments must be a JSON object")
    return fn["name"], {"functionCall": {"name": fn["name"], "args": args}}


def _tool_response(content: Any) -> dict[str, Any]:
    text = _text(content)
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"content": text}


def contents_from_messages(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(systemInstruction parts, contents) for OpenAI chat messages."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for i, m in enumerate(messages):
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(_parts(m.get("content"), i, text_only=True))
        elif role == "user":
            add("user", _parts(m.get("content"), i))
        elif role == "assistant":
            parts = _parts(m.get("content"), i, text_only=True)
            calls = []
            for tc in m.get("tool_calls") or []:
                name, part = _call_part(tc.get("function") if isinstance(tc, dict) else None, i)
                if isinstance(tc, dict) and isinstance(tc.get("id"), str):
                    names[tc["id"]] = name
                calls.append(part)
            if m.get("function_call") is not None:
                calls.append(_call_part(m["function_call"], i)[1])
            if calls:
                calls[0]["thoughtSignature"] = SKIP_SIGNATURE
            add("model", parts + calls)
        elif role in ("tool", "function"):
            fname = names.get(str(m.get("tool_call_id"))) if role == "tool" else m.get("name")
            if not isinstance(fname, str):
                raise _bad_msg(i, f"tool_call_id {m.get('tool_call_id')!r} matches no earlier tool call")
            response = _tool_response(m.get("content"))
            add("user", [{"functionResponse": {"name": fname, "response": response}}])
        else:
            raise _bad_msg(i, f"unknown role {role!r}")
    return system, contents


def declarations(provider: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    fns: list[Any] = []
    for t in body.get("tools") or []:
        if not isinstance(t, dict) or t.get("type") != "function":
            raise CapabilityError(
                f"provider {provider!r} (gemini) supports only function tools", param="tools"
            )
        fns.append(t.get("function"))
    legacy = body.get("functions")
    if legacy is not None and not isinstance(legacy, list):
        raise InvalidRequest("functions must be a list", param="functions")
    fns.extend(legacy or [])
    out = []
    for f in fns:
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise InvalidRequest("every tool needs a function name", param="tools")
        decl: dict[str, Any] = {"name": f["name"]}
        if isinstance(f.get("description"), str) and f["description"]:
            decl["description"] = f["description"]
        if isinstance(f.get("parameters"), dict):
            params = schema_to_gemini(f["parameters"], "tools")
            # Gemini refuses an OBJECT without properties: a function without arguments has none.
            if params.get("type") != "object" or params.get("properties"):
                decl["parameters"] = params
        out.append(decl)
    return out


def tool_config(choice: Any, has_tools: bool) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _TOOL_MODES:
        if not has_tools:
            if choice == "required":
                raise InvalidRequest("tool_choice 'required' needs tools", param="tool_choice")
            return None
        return {"functionCallingConfig": {"mode": _TOOL_MODES[choice]}}
    fn = choice.get("function", choice) if isinstance(choice, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str) or not has_tools:
        raise InvalidRequest(
            "tool_choice must be auto, none, required or a declared function", param="tool_choice"
        )
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
