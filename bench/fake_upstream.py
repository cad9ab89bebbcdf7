"""A deliberately cheap OpenAI-compatible upstream for benchmarks (uvloop + httptools, canned replies).

It must never be the bottleneck: each request costs a few microseconds of CPU.
POST /v1/chat/completions answers a fixed completion, or with "stream": true a first SSE chunk at
once and the rest after STREAM_GAP_S (so a buffering gateway would show the gap in its TTFB).
Usage: python bench/fake_upstream.py PORT
"""

from __future__ import annotations

import asyncio
import sys

import httptools
import orjson
import uvloop

STREAM_GAP_S = 0.01

COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the fake upstream."},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    }
)
MODELS = orjson.dumps(
    {"object": "list", "data": [{"id": "bench", "object": "model", "created": 0, "owned_by": "bench"}]}
)


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    return (
        b"data: "
        + orjson.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": "bench",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )
        + b"\n\n"
    )


FIRST = _chunk({"role": "assistant", "content": "Hello"})
REST = [_chunk({"content": f" word{i}"}) for i in range(8)] + [_chunk({}, "stop"), b"data: [DONE]\n\n"]


def _response(body: bytes, ctype: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: "
        + ctype
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class Proto(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        body = b"".join(self.body)
        self.body = []
        if self.url.endswith(b"/models"):
            self.transport.write(_response(MODELS))
        elif b'"stream":true' in body.replace(b" ", b""):
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n" + _chunked(FIRST)
            )
            asyncio.get_running_loop().call_later(STREAM_GAP_S, self._finish_stream, self.transport)
        else:
            self.transport.write(_response(COMPLETION))

    @staticmethod
    def _finish_stream(transport: asyncio.Transport) -> None:
        if not transport.is_closing():
            transport.write(b"".join(_chunked(c) for c in REST) + b"0\r\n\r\n")


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Proto, "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
