from __future__ import annotations

from aigw.providers.sse import SSEEvent, SSEParser

STREAM = (
    b": keep-alive comment\n\n"
    b'event: message_start\ndata: {"a": 1}\n\n'
    b"data: line one\ndata: line two\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent("message_start", '{"a": 1}'),
    SSEEvent("message", "line one\nline two"),
    SSEEvent("message", "[DONE]"),
]


def test_whole_stream() -> None:
    assert SSEParser().feed(STREAM) == EXPECTED


def test_every_split_point_gives_the_same_events() -> None:
    for i in range(len(STREAM)):
        p = SSEParser()
        assert p.feed(STREAM[:i]) + p.feed(STREAM[i:]) + p.close() == EXPECTED


def test_crlf_split_across_reads() -> None:
    crlf = STREAM.replace(b"\n", b"\r\n")
    for i in range(len(crlf)):
        p = SSEParser()
        assert p.feed(crlf[:i]) + p.feed(crlf[i:]) + p.close() == EXPECTED


def test_event_without_trailing_blank_line_is_kept_at_close() -> None:
    p = SSEParser()
    assert p.feed(b"data: x") == []
    assert p.close() == [SSEEvent("message", "x")]
    assert p.close() == []


def test_field_without_space_and_unknown_fields() -> None:
    assert SSEParser().feed(b"data:x\nid: 3\nretry: 5\n\n") == [SSEEvent("message", "x")]
