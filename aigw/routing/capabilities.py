"""What a chat request needs from a backend, so nothing it asks for is silently ignored. Pure."""

from __future__ import annotations

from aigw.domain import Capability, ChatRequest

# Everything a request can require; a backend with all of these needs no per-request check.
CHAT_FEATURES = frozenset(
    {Capability.TOOLS, Capability.JSON_MODE, Capability.JSON_SCHEMA, Capability.LOGPROBS, Capability.VISION}
)
_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})


def requirements(req: ChatRequest) -> list[tuple[Capability, str]]:
    """(capability, the request field that asks for it), in field order."""
    body = req.body
    out: list[tuple[Capability, str]] = []
    if body.get("tools"):
        out.append((Capability.TOOLS, "tools"))
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_object":
            out.append((Capability.JSON_MODE, "response_format"))
        elif fmt.get("type") == "json_schema":
            out.append((Capability.JSON_SCHEMA, "response_format"))
    if body.get("logprobs") or body.get("top_logprobs"):
        out.append((Capability.LOGPROBS, "logprobs"))
    for msg in req.messages:
        content = msg.get("content")
        if isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") in _IMAGE_PARTS for p in content
        ):
            out.append((Capability.VISION, "messages"))
            break
    return out
