"""aigw.providers.httpclient against real loopback servers scripted byte by byte: keep-alive reuse,
the stale-connection retry, body framings and encodings, failures and timeouts, the connection
limit, backpressure, the request bytes on the wire, and TLS."""

from __future__ import annotations

import asyncio
import gzip
import re
import shutil
import socket
import ssl
import subprocess
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aigw.providers.httpclient import BadResponse, ConnectFailed, ConnectionLost, ConnectionPool, Response

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]
BOTH_LOOPS = pytest.mark.parametrize("anyio_backend", ["asyncio", ("asyncio", {"use_uvloop": True})])


@pytest.fixture
def anyio_backend() -> Any:
    return "asyncio"


# A connection's script, step by step: REQ reads one request, bytes are written (and drained), a
# float sleeps, an Event is awaited, a callable is called, HANG waits until the client closes.
# At the end of its script the server hangs up.
REQ, HANG = "request", "hang"
Step = str | bytes | float | asyncio.Event | Callable[[], object]


class RawServer:
    """A loopback server: the n-th connection (from 1) runs scripts[n - 1], or the last script."""

    def __init__(self, *scripts: list[Step], **kw: Any) -> None:
        self.scripts, self._kw = scripts, kw
        self.connections = 0
        self.requests: list[tuple[int, bytes]] = []  # (connection number, raw request bytes)
        self.closed_by_client: set[int] = set()  # connections whose EOF a HANG step saw
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, **self._kw)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self._kw.get('ssl') else 'http'}://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        n = self.connections
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            for step in self.scripts[min(n, len(self.scripts)) - 1]:
                if step == REQ:
                    head = await reader.readuntil(b"\r\n\r\n")
                    m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                    self.requests.append((n, head + (await reader.readexactly(int(m[1])) if m else b"")))
                elif step == HANG:
                    while await reader.read(65536):
                        pass
                    self.closed_by_client.add(n)
                elif isinstance(step, bytes):
                    writer.write(step)
                    await writer.drain()
                elif isinstance(step, float):
                    await asyncio.sleep(step)
                elif isinstance(step, asyncio.Event):
                    await step.wait()
                elif callable(step):
                    step()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            writer.close()

    def paths(self) -> list[tuple[int, str]]:
        return [(n, raw.split(b" ")[1].decode()) for n, raw in self.requests]


def ok(body: bytes = b"hello", *extra: str) -> bytes:
    more = "".join(f"{h}\r\n" for h in extra)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{more}\r\n".encode() + body


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def serving(n: int = 30) -> list[Step]:
    return [REQ, ok()] * n + [HANG]


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
GZ = "Content-Encoding: gzip"
PARTIAL = ok(b"0123456789")[:-7]  # the head and 3 of 10 body bytes


async def get(pool: ConnectionPool, path: str = "/", **kw: Any) -> Response:
    kw.setdefault("head_timeout", 2.0)
    return await pool.request("GET", path, [], None, **kw)


async def fetch(pool: ConnectionPool, path: str = "/", **kw: Any) -> bytes:
    resp = await get(pool, path, **kw)
    try:
        return await resp.read(2.0)
    finally:
        resp.release()


async def until(cond: Callable[[], bool]) -> None:
    for _ in range(400):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached in 2 s")


# -- 1. keep-alive -------------------------------------------------------------------------------


async def test_sequential_requests_share_one_connection() -> None:
    chunked = CHUNKED + chunk(b"hel") + chunk(b"lo") + b"0\r\n\r\n"
    replies = [ok(), chunked, ok(gzip.compress(b"hello"), GZ)]  # every framing keeps the connection
    async with RawServer([s for i in range(20) for s in (REQ, replies[i % 3])] + [HANG]) as srv:
        pool = ConnectionPool(srv.url)
        for i in range(20):
            assert await fetch(pool, f"/r{i}") == b"hello"
        assert srv.connections == 1
        assert srv.paths() == [(1, f"/r{i}") for i in range(20)]
        assert pool.in_use() == 0


async def test_connection_close_from_server_opens_a_new_connection() -> None:
    async with RawServer([REQ, ok(), REQ, ok(b"bye", "Connection: close"), HANG], serving()) as srv:
        pool = ConnectionPool(srv.url)
        assert [await fetch(pool, p) for p in ("/a", "/close", "/b")] == [b"hello", b"bye", b"hello"]
        assert srv.paths() == [(1, "/a"), (1, "/close"), (2, "/b")]
        await until(lambda: 1 in srv.closed_by_client)


async def test_response_released_before_its_end_closes_the_connection() -> None:
    async with RawServer([REQ, PARTIAL, HANG], serving()) as srv:
        pool = ConnectionPool(srv.url)
        resp = await get(pool)
        assert resp.status == 200
        resp.release()
        resp.release()  # a second release is a no-op
        assert pool.in_use() == 0
        await until(lambda: 1 in srv.closed_by_client)
        assert await fetch(pool) == b"hello"
        assert srv.paths() == [(1, "/"), (2, "/")]


async def test_unread_body_above_high_water_does_not_wedge_the_next_request() -> None:
    big = b"x" * (256 * 1024 + 1)  # over the pause threshold only once its last byte arrived
    async with RawServer([REQ, ok(big), *serving()]) as srv:
        pool = ConnectionPool(srv.url)
        resp = await get(pool, "/big")
        await until(lambda: resp._conn is not None and resp._conn._complete)
        resp.release()  # complete, unread: the connection may be kept, but must read again
        assert await fetch(pool, "/next", head_timeout=0.5) == b"hello"
        assert srv.paths() == [(1, "/big"), (1, "/next")]


# -- 2. stale keep-alive connections -------------------------------------------------------------


@BOTH_LOOPS
@pytest.mark.parametrize("noticed", [True, False], ids=["close-noticed", "close-on-request"])
async def test_stale_keepalive_connection_is_replaced(noticed: bool) -> None:
    # Connection 1 answers two requests, then hangs up: idle (noticed by the client before its next
    # request), or on reading the next request (the race: the client wrote before seeing the close).
    first = [REQ, ok(), REQ, ok()] + ([] if noticed else [REQ])
    async with RawServer(first, serving()) as srv:
        pool = ConnectionPool(srv.url)
        assert await fetch(pool, "/a") == b"hello"
        assert await fetch(pool, "/a2") == b"hello"
        if noticed:
            await asyncio.sleep(0.05)
        assert await fetch(pool, "/b") == b"hello"
        retried = [] if noticed else [(1, "/b")]  # exactly one retry
        assert srv.paths() == [(1, "/a"), (1, "/a2"), *retried, (2, "/b")]
        assert pool.in_use() == 0


@pytest.mark.parametrize("partial", [b"HTTP/1.1 200 OK\r\nContent-", PARTIAL], ids=["head", "body"])
async def test_connection_dying_after_response_bytes_is_not_retried(partial: bytes) -> None:
    async with RawServer([REQ, ok(), REQ, partial], serving()) as srv:
        pool = ConnectionPool(srv.url)
        assert await fetch(pool, "/a") == b"hello"
        with pytest.raises(ConnectionLost) as e:
            await fetch(pool, "/b")
        assert e.value.before_response is False
        assert srv.paths() == [(1, "/a"), (1, "/b")]
        assert pool.in_use() == 0


async def test_retry_after_a_stale_connection_uses_a_fresh_one() -> None:
    # Two kept-alive connections, then the server restarts: both die on their next request.
    async with RawServer([REQ, ok(), REQ], [REQ, ok(), REQ], serving()) as srv:
        pool = ConnectionPool(srv.url)
        r1, r2 = await get(pool), await get(pool)
        for r in (r1, r2):
            assert await r.read(2) == b"hello"
            r.release()
        assert await fetch(pool, "/c") == b"hello"  # ConnectionLost from the second stale one
        assert (2, "/c") in srv.paths() and srv.paths()[-1] == (3, "/c")


# -- 3. bodies -----------------------------------------------------------------------------------


async def test_chunked_pieces_are_yielded_as_they_arrive() -> None:
    go, sent = asyncio.Event(), []
    script = [REQ, CHUNKED + chunk(b"first"), go, lambda: sent.append(2), chunk(b"second"), 0.02]
    async with RawServer([*script, b"0\r\n\r\n", HANG]) as srv:
        pool = ConnectionPool(srv.url)
        resp = await get(pool)
        it = resp.iter_chunks(2.0)
        assert await anext(it) == b"first"
        assert sent == []  # received before the server sent the second piece
        go.set()
        assert [p async for p in it] == [b"second"]
        resp.release()
        assert pool.in_use() == 0


async def test_close_delimited_body_ends_at_close() -> None:
    async with RawServer([REQ, b"HTTP/1.1 200 OK\r\n\r\nabc", 0.02, b"def"], serving()) as srv:
        pool = ConnectionPool(srv.url)
        assert await fetch(pool) == b"abcdef"
        assert await fetch(pool) == b"hello"
        assert srv.paths() == [(1, "/"), (2, "/")]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_bodies_are_decoded(encoding: str) -> None:
    text = b"".join(b"line %d of the answer\n" % i for i in range(2000))
    packed = gzip.compress(text) if encoding == "gzip" else zlib.compress(text)
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\nTransfer-Encoding: chunked\r\n\r\n"
    script = [REQ, head.encode() + chunk(packed[:100]), 0.01, chunk(packed[100:]) + b"0\r\n\r\n", HANG]
    async with RawServer(script) as srv:
        assert await fetch(ConnectionPool(srv.url)) == text


async def test_undecodable_gzip_body_is_a_bad_response() -> None:
    async with RawServer([REQ, ok(b"this is not gzip data", GZ), HANG]) as srv:
        pool = ConnectionPool(srv.url)
        with pytest.raises(BadResponse, match="undecodable gzip"):
            await fetch(pool)
        assert pool.in_use() == 0


async def test_truncated_gzip_body_is_a_bad_response() -> None:
    packed = gzip.compress(b"x" * 5000)
    async with RawServer([REQ, ok(packed[: len(packed) // 2], GZ), HANG]) as srv:
        with pytest.raises(BadResponse, match="truncated gzip"):
            await fetch(ConnectionPool(srv.url))


async def test_headers_repeated_joined_and_case_insensitive() -> None:
    reply = ok(b"{}", "X-Multi: a", "x-multi: b", "X-MULTI: c", "Content-Type: application/json")
    async with RawServer([REQ, reply, HANG]) as srv:
        resp = await get(ConnectionPool(srv.url))
        assert resp.headers["x-multi"] == resp.headers["X-Multi"] == "a, b, c"
        assert resp.headers.get("CONTENT-TYPE") == "application/json"
        assert "Content-Length" in resp.headers and "x-missing" not in resp.headers
        assert resp.headers.get("X-Missing", "dflt") == "dflt"
        assert await resp.read(2) == b"{}"
        resp.release()


# -- 4. errors and timeouts ----------------------------------------------------------------------


async def test_connection_refused_is_connect_failed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        pool = ConnectionPool(f"http://127.0.0.1:{port}")
        with pytest.raises(ConnectFailed):
            await get(pool)
    assert pool.in_use() == 0


FAILURES = {
    "garbage": (b"SSH-2.0-OpenSSH_9.6\r\n", BadResponse),
    "bad-status": (b"HTTP/1.1 abc\r\n\r\n", BadResponse),
    "closed-at-once": (b"", ConnectionLost),
    "closed-in-head": (b"HTTP/1.1 200 OK\r\nContent-", ConnectionLost),
    "closed-in-body": (PARTIAL, ConnectionLost),
}


@pytest.mark.parametrize(("reply", "error"), FAILURES.values(), ids=FAILURES.keys())
async def test_broken_answer_on_a_fresh_connection_fails_without_retry(reply: bytes, error: type) -> None:
    async with RawServer([REQ, reply]) as srv:  # then the server hangs up
        pool = ConnectionPool(srv.url)
        with pytest.raises(error) as e:
            await fetch(pool)
        if error is ConnectionLost:
            assert e.value.before_response is (reply == b"")
        assert srv.paths() == [(1, "/")]
        assert pool.in_use() == 0


async def test_head_timeout_and_the_connection_is_not_reused() -> None:
    async with RawServer([REQ, HANG], serving()) as srv:
        pool = ConnectionPool(srv.url)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            await get(pool, head_timeout=0.2)
        assert 0.15 < time.monotonic() - t0 < 1.0
        assert pool.in_use() == 0
        await until(lambda: 1 in srv.closed_by_client)
        assert await fetch(pool) == b"hello"
        assert srv.paths() == [(1, "/"), (2, "/")]


async def test_read_timeout_between_chunks() -> None:
    async with RawServer([REQ, CHUNKED + chunk(b"one"), HANG]) as srv:
        pool = ConnectionPool(srv.url)
        resp = await get(pool)
        it = resp.iter_chunks(0.2)
        assert await anext(it) == b"one"
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            await anext(it)
        assert 0.15 < time.monotonic() - t0 < 1.0
        resp.release()
        assert pool.in_use() == 0
        await until(lambda: 1 in srv.closed_by_client)


async def test_total_timeout_bounds_a_slow_trickle() -> None:
    async with RawServer([REQ, CHUNKED, *[chunk(b"."), 0.02] * 100]) as srv:  # gaps << read timeout
        pool = ConnectionPool(srv.url)
        t0 = time.monotonic()
        resp = await get(pool, total_timeout=0.4)
        got = b""
        with pytest.raises(TimeoutError):
            async for piece in resp.iter_chunks(1.0):
                got += piece
        assert 0.35 < time.monotonic() - t0 < 0.9
        assert 5 <= len(got) <= 25
        resp.release()
        assert pool.in_use() == 0


async def test_total_timeout_bounds_the_wait_for_headers() -> None:
    async with RawServer([REQ, HANG]) as srv:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            await get(ConnectionPool(srv.url), head_timeout=1.0, total_timeout=0.2)
        assert time.monotonic() - t0 < 0.6  # it takes the whole head_timeout (1 s)


# -- 5. the connection limit ---------------------------------------------------------------------


async def test_limit_makes_the_third_request_wait_for_a_release() -> None:
    async with RawServer(serving()) as srv:
        pool = ConnectionPool(srv.url, limit=2)
        r1, r2 = await get(pool, "/1"), await get(pool, "/2")
        assert pool.in_use() == 2
        order: list[str] = []

        async def third() -> Response:
            r = await get(pool, "/3")
            order.append("third answered")
            return r

        task = asyncio.create_task(third())
        await asyncio.sleep(0.1)
        assert not task.done() and [p for _, p in srv.paths()] == ["/1", "/2"] and pool.in_use() == 2
        assert await r1.read(2) == b"hello"
        order.append("released")
        r1.release()
        r3 = await task
        assert order == ["released", "third answered"]
        assert pool.in_use() == 2
        for r in (r2, r3):
            r.release()
        assert pool.in_use() == 0


async def test_in_use_returns_to_zero_after_errors_cancellations_and_early_releases() -> None:
    held = [REQ, PARTIAL, HANG]
    async with RawServer([REQ, HANG], held, held, [REQ, b"garbage\r\n\r\n", HANG], serving()) as srv:
        pool = ConnectionPool(srv.url, limit=2)
        task = asyncio.create_task(get(pool, "/hang"))  # cancelled while awaiting the headers
        await until(lambda: len(srv.requests) == 1)
        assert pool.in_use() == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.in_use() == 0
        await until(lambda: 1 in srv.closed_by_client)

        responses = [await get(pool, "/partial"), await get(pool, "/partial")]
        waiting = asyncio.create_task(get(pool, "/never"))  # cancelled while waiting for a slot
        await asyncio.sleep(0.02)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert pool.in_use() == 2
        with pytest.raises(TimeoutError):
            await responses[0].read(0.05)
        for r in responses:
            r.release()
        assert pool.in_use() == 0

        with pytest.raises(BadResponse):
            await get(pool, "/garbage")
        assert pool.in_use() == 0
        pair = await asyncio.wait_for(asyncio.gather(get(pool), get(pool)), 2)
        assert pool.in_use() == 2  # both slots are free again
        for r in pair:
            r.release()
        assert pool.in_use() == 0
        assert "/never" not in [p for _, p in srv.paths()]


# -- 6. backpressure -----------------------------------------------------------------------------


@BOTH_LOOPS
async def test_backpressure_bounds_buffered_bytes_of_a_slow_reader() -> None:
    size = 8 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)
    pieces = [payload[i : i + 65536] for i in range(0, size, 65536)]
    async with RawServer(
        [REQ, f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode(), *pieces]
    ) as srv:
        resp = await get(ConnectionPool(srv.url))
        conn = resp._conn
        assert conn is not None
        got, peak, paused = bytearray(), 0, False
        async for piece in resp.iter_chunks(2.0):
            got += piece
            await asyncio.sleep(0.002)  # a slow reader: the socket would deliver far faster
            peak, paused = max(peak, conn._buffered), paused or conn._paused
        resp.release()
        assert got == payload
        assert paused and peak < 1024 * 1024


# -- 7. the request on the wire ------------------------------------------------------------------


async def test_request_bytes_on_the_wire() -> None:
    async with RawServer(serving()) as srv:
        pool = ConnectionPool(srv.url + "/v1/")
        hdrs = [("Authorization", "Bearer k"), ("X-Custom", "v")]
        (await pool.request("POST", "/chat", hdrs, b'{"a":1}', head_timeout=2)).release()
        (await pool.request("GET", "/a b\r\nX-Injected: 1\r\n?q=1 2", [], None, head_timeout=2)).release()
        host = f"Host: 127.0.0.1:{srv.port}\r\n".encode()
        post = b"POST /v1/chat HTTP/1.1\r\n" + host + b"Authorization: Bearer k\r\nX-Custom: v\r\n"
        assert srv.requests[0][1] == post + b'Content-Length: 7\r\n\r\n{"a":1}'
        target = b"/v1/a%20b%0D%0AX-Injected:%201%0D%0A?q=1%202"  # no space, CR or LF on the wire
        assert srv.requests[1][1] == b"GET " + target + b" HTTP/1.1\r\n" + host + b"\r\n"


def test_host_header_and_default_ports() -> None:
    assert ConnectionPool("http://api.example.com/v1").host_header == "api.example.com"
    assert ConnectionPool("https://api.example.com:443").host_header == "api.example.com"
    assert ConnectionPool("https://api.example.com:8443").host_header == "api.example.com:8443"
    assert ConnectionPool("http://[::1]:8080").host_header == "[::1]:8080"
    assert ConnectionPool("https://h").port == 443 and ConnectionPool("http://h").port == 80


# -- 8. TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:  # `cryptography` is not a dependency of the project
        pytest.skip("no `openssl` binary to make a self-signed test certificate")
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "cert.pem", d / "key.pem"
    args = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
    names = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    cmd = ["openssl", "req", "-x509", *args, *names, "-keyout", str(key), "-out", str(crt)]
    subprocess.run(cmd, check=True, capture_output=True)
    return crt, key


async def test_tls_trusted_and_untrusted(cert: tuple[Path, Path]) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(*cert)
    async with RawServer(serving(), ssl=server_ctx) as srv:
        pool = ConnectionPool(srv.url, tls=ssl.create_default_context(cafile=str(cert[0])))
        assert await fetch(pool) == b"hello"
        untrusting = ConnectionPool(srv.url, tls=ssl.create_default_context())
        with pytest.raises(ConnectFailed, match=r"(?i)certificate"):
            await get(untrusting)
        assert untrusting.in_use() == 0
        assert srv.paths() == [(1, "/")]
