"""Router: capability contract, health recording, stray exceptions. In-memory providers behind the seam."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aigw.domain import (
    Capability,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    ModelInfo,
    Route,
    Target,
)
from aigw.errors import CapabilityError, UpstreamProtocolError, UpstreamStatusError
from aigw.routing.health import HealthBoard
from aigw.routing.router import Router

BASIC = frozenset({Capability.CHAT, Capability.STREAM})


class Scripted:
    def __init__(self, name: str, caps: frozenset[Capability], fail: Exception | None = None) -> None:
        self.name = name
        self.capabilities = caps
        self.fail = fail
        self.calls = 0

    def capabilities_for(self, model: str) -> frozenset[Capability]:
        return self.capabilities

    async def list_models(self) -> list[ModelInfo]:
        return []

    async def chat(self, req: ChatRequest) -> ChatResponse:
        self.calls += 1
        if self.fail:
            raise self.fail
        return ChatResponse(
            "id", 0, req.model, [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]
        )

    async def stream_chat(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        yield ChatChunk("id", 0, req.model, [{"index": 0, "delta": {"content": "a"}}])
        if self.fail:
            raise self.fail
        yield ChatChunk("id", 0, req.model, [{"index": 0, "delta": {}, "finish_reason": "stop"}])

    async def embed(self, req: EmbedRequest) -> EmbedResponse:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


def req(**body: Any) -> ChatRequest:
    return ChatRequest(
        body={"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}, model="m"
    )


def router(*providers: Scripted) -> tuple[Router, HealthBoard]:
    health = HealthBoard([p.name for p in providers])
    return Router({p.name: p for p in providers}, health), health


ROUTE = Route("smart", (Target("basic", "b"), Target("full", "f")), alias="smart")
IMAGE = [
    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}
]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"messages": IMAGE}, "messages"),
    ],
)
def test_request_needing_a_feature_goes_to_a_capable_target_or_is_refused(
    body: dict[str, Any], param: str
) -> None:
    basic, full = (
        Scripted("basic", BASIC),
        Scripted(
            "full",
            BASIC
            | {
                Capability.TOOLS,
                Capability.JSON_MODE,
                Capability.JSON_SCHEMA,
                Capability.LOGPROBS,
                Capability.VISION,
            },
        ),
    )
    r, _ = router(basic, full)
    routed = asyncio.run(r.chat(ROUTE, req(**body)))
    assert routed.target == Target("full", "f") and (basic.calls, full.calls) == (0, 1)
    only_basic = Route("b", (Target("basic", "b"),))
    with pytest.raises(CapabilityError) as e:
        asyncio.run(r.chat(only_basic, req(**body)))
    assert e.value.param == param and e.value.status_code == 400 and basic.calls == 0


def test_plain_request_uses_the_first_target() -> None:
    basic, full = Scripted("basic", BASIC), Scripted("full", BASIC)
    r, _ = router(basic, full)
    assert asyncio.run(r.chat(ROUTE, req())).target == Target("basic", "b")


def test_client_fault_does_not_mark_provider_unhealthy() -> None:
    bad = UpstreamStatusError("p returned HTTP 400: bad", provider="basic", upstream_status=400)
    p = Scripted("basic", BASIC, fail=bad)
    r, health = router(p)
    with pytest.raises(UpstreamStatusError):
        asyncio.run(r.chat(Route("b", (Target("basic", "b"),)), req()))
    assert health.snapshot("basic")["last_error"] is None


def test_stray_exception_becomes_protocol_error_and_is_recorded() -> None:
    p = Scripted("basic", BASIC, fail=KeyError("oops"))
    r, health = router(p)
    with pytest.raises(UpstreamProtocolError):
        asyncio.run(r.chat(Route("b", (Target("basic", "b"),)), req()))
    assert "unexpected failure (KeyError)" in str(health.snapshot("basic")["last_error"])


def test_stream_failure_after_first_chunk_is_mapped_and_recorded() -> None:
    p = Scripted("basic", BASIC, fail=ValueError("broken"))
    r, health = router(p)

    async def run() -> list[ChatChunk]:
        s = await r.open_stream(Route("b", (Target("basic", "b"),)), req(stream=True))
        assert s.head
        return [c async for c in s.rest]

    with pytest.raises(UpstreamProtocolError):
        asyncio.run(run())
    assert health.snapshot("basic")["last_error"] is not None


def test_closing_a_stream_whose_relay_never_started_closes_the_upstream() -> None:
    closed: list[bool] = []

    class Tracked(Scripted):
        async def stream_chat(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
            try:
                yield ChatChunk("id", 0, req.model, [{"index": 0, "delta": {"content": "a"}}])
                yield ChatChunk("id", 0, req.model, [{"index": 0, "delta": {}, "finish_reason": "stop"}])
            finally:
                closed.append(True)

    r, _ = router(Tracked("basic", BASIC))

    async def run() -> None:
        s = await r.open_stream(Route("b", (Target("basic", "b"),)), req(stream=True))
        assert s.head and not closed
        await s.aclose()  # e.g. the client left while the head was being sent

    asyncio.run(run())
    assert closed == [True]
