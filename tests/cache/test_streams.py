"""aigw.cache.streams: folding streamed chunks into a completion, and replaying a completion as chunks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from aigw.cache.streams import Assembler, replay
from aigw.domain import ChatChunk, Usage

ID = "chatcmpl-abc123"
CREATED = 1_700_000_123
MODEL = "gpt-4o-mini-2024-07-18"
USAGE = Usage(
    prompt_tokens=12,
    completion_tokens=5,
    total_tokens=17,
    extra={"prompt_tokens_details": {"cached_tokens": 0}},
)


def chunk(
    choices: list[dict[str, Any]], usage: Usage | None = None, extra: dict[str, Any] | None = None
) -> ChatChunk:
    return ChatChunk(ID, CREATED, MODEL, choices, usage, extra if extra is not None else {})


def delta(
    index: int = 0, finish_reason: str | None = None, logprobs: Any = None, **fields: Any
) -> dict[str, Any]:
    return {"index": index, "delta": fields, "logprobs": logprobs, "finish_reason": finish_reason}


def text_stream(parts: list[str], *, finish: str = "stop", usage: bool = True) -> list[ChatChunk]:
    """What OpenAI streams for a plain answer with include_usage."""
    out = [chunk([delta(role="assistant", content="", refusal=None)])]
    out += [chunk([delta(content=p)]) for p in parts]
    out.append(chunk([delta(finish_reason=finish)]))
    if usage:
        out.append(chunk([], USAGE))
    return out


def assemble(chunks: list[ChatChunk]) -> Assembler:
    a = Assembler()
    for c in chunks:
        a.add(c)
    return a


def from_wire(d: dict[str, Any]) -> ChatChunk:
    """A ChatChunk as a client's parser would build it from a replayed chunk."""
    u = d.get("usage")
    usage = None
    if u is not None:
        rest = {k: v for k, v in u.items() if k not in ("prompt_tokens", "completion_tokens", "total_tokens")}
        usage = Usage(u["prompt_tokens"], u["completion_tokens"], u["total_tokens"], rest)
    known = ("id", "object", "created", "model", "choices", "usage")
    extra = {k: v for k, v in d.items() if k not in known}
    return ChatChunk(d["id"], d["created"], d["model"], d["choices"], usage, extra)


def test_plain_text_stream_assembles_into_the_non_streaming_completion() -> None:
    a = assemble(text_stream(["Hel", "lo", ", world", "!"]))
    assert a.complete
    assert a.usage == USAGE
    assert a.completion() == {
        "id": ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello, world!"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 5,
            "total_tokens": 17,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


def test_head_comes_from_the_first_chunk_and_extra_fields_are_kept() -> None:
    first = ChatChunk("chatcmpl-first", 111, "m-first", [delta(role="assistant", content="a")], None, {})
    later = ChatChunk(
        "chatcmpl-other",
        222,
        "m-other",
        [delta(finish_reason="length")],
        None,
        {"system_fingerprint": "fp_1"},
    )
    a = assemble([first, later])
    out = a.completion()
    assert (out["id"], out["created"], out["model"]) == ("chatcmpl-first", 111, "m-first")
    assert out["system_fingerprint"] == "fp_1"
    assert out["choices"][0]["finish_reason"] == "length"
    assert "usage" not in out
    assert a.complete


def test_stream_without_usage_has_no_usage() -> None:
    a = assemble(text_stream(["hi"], usage=False))
    assert a.complete
    assert a.usage is None
    assert "usage" not in a.completion()


def test_tool_call_deltas_fold_into_message_tool_calls() -> None:
    chunks = [
        chunk([delta(role="assistant", content=None)]),
        chunk(
            [
                delta(
                    tool_calls=[
                        {
                            "index": 0,
                            "id": "call_A",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ]
                )
            ]
        ),
        chunk([delta(tool_calls=[{"index": 0, "function": {"arguments": '{"city": '}}])]),
        chunk(
            [
                delta(
                    tool_calls=[
                        {
                            "index": 1,
                            "id": "call_B",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": ""},
                        }
                    ]
                )
            ]
        ),
        chunk([delta(tool_calls=[{"index": 0, "function": {"arguments": '"Paris"}'}}])]),
        chunk([delta(tool_calls=[{"index": 1, "function": {"arguments": '{"tz": "CET"'}}])]),
        chunk([delta(tool_calls=[{"index": 1, "function": {"arguments": "}"}}])]),
        chunk([delta(finish_reason="tool_calls")]),
        chunk([], USAGE),
    ]
    a = assemble(chunks)
    assert a.complete
    (choice,) = a.completion()["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_A",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "call_B",
                "type": "function",
                "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
            },
        ],
    }


def test_two_choices_interleaved() -> None:
    chunks = [
        chunk([delta(0, role="assistant", content=""), delta(1, role="assistant", content="")]),
        chunk([delta(1, content="B1 ")]),
        chunk([delta(0, content="A1 ")]),
        chunk([delta(0, content="A2")]),
        chunk([delta(1, content="B2")]),
        chunk([delta(1, finish_reason="length")]),
    ]
    a = assemble(chunks)
    assert not a.complete  # choice 0 has not finished yet
    a.add(chunk([delta(0, finish_reason="stop")]))
    assert a.complete
    choices = a.completion()["choices"]
    assert [c["index"] for c in choices] == [0, 1]
    assert [c["message"]["content"] for c in choices] == ["A1 A2", "B1 B2"]
    assert [c["finish_reason"] for c in choices] == ["stop", "length"]


def test_other_text_fields_and_logprobs_fold() -> None:
    lp1 = [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}]
    lp2 = [{"token": "!", "logprob": -0.2, "bytes": [33], "top_logprobs": []}]
    chunks = [
        chunk([delta(role="assistant", reasoning_content="Think")]),
        chunk([delta(reasoning_content="ing.")]),
        chunk([delta(content="Hi", logprobs={"content": lp1})]),
        chunk([delta(content="!", logprobs={"content": lp2})]),
        chunk([delta(finish_reason="stop")]),
    ]
    a = assemble(chunks)
    assert a.complete
    (choice,) = a.completion()["choices"]
    assert choice["message"] == {"role": "assistant", "content": "Hi!", "reasoning_content": "Thinking."}
    assert choice["logprobs"] == {"content": lp1 + lp2}


def test_refusal_without_content_has_null_content() -> None:
    a = assemble([chunk([delta(role="assistant", refusal="I can't")]), chunk([delta(finish_reason="stop")])])
    assert a.complete
    assert a.completion()["choices"][0]["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": "I can't",
    }


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([], id="nothing"),
        pytest.param(text_stream(["cut"])[:2], id="no-finish-reason"),
        pytest.param([chunk([], USAGE)], id="usage-only"),
        pytest.param(
            [
                chunk([delta(0, content="a"), delta(1, content="b")]),
                chunk([delta(0, finish_reason="stop")]),
            ],
            id="one-of-two-choices-finished",
        ),
        pytest.param(
            [
                chunk(
                    [delta(role="assistant", audio={"id": "audio_1", "data": "UklGR", "transcript": "hi"})]
                ),
                chunk([delta(finish_reason="stop")]),
            ],
            id="audio-delta",
        ),
        pytest.param(
            [
                chunk([delta(function_call={"name": "f", "arguments": "{}"})]),
                chunk([delta(finish_reason="function_call")]),
            ],
            id="legacy-function_call-delta",
        ),
        pytest.param(
            [chunk([delta(content="x", annotations=[{"type": "url_citation"}], finish_reason="stop")])],
            id="list-delta",
        ),
        pytest.param(
            [chunk([delta(tool_calls=[{"id": "c", "function": {"name": "f"}}], finish_reason="tool_calls")])],
            id="tool-call-without-index",
        ),
        pytest.param(
            [chunk([{"index": "0", "delta": {"content": "x"}, "finish_reason": "stop"}])],
            id="non-int-choice-index",
        ),
        pytest.param(
            [chunk([{"index": 0, "delta": "x", "finish_reason": "stop"}])],
            id="non-dict-delta",
        ),
    ],
)
def test_incomplete_or_unfoldable_stream_is_not_complete(chunks: list[ChatChunk]) -> None:
    assert not assemble(chunks).complete


def test_unfoldable_delta_spoils_an_otherwise_finished_stream() -> None:
    good = text_stream(["Hello"])
    a = assemble(good)
    assert a.complete
    bad = [*good[:2], chunk([delta(audio={"transcript": "Hello"})]), *good[2:]]
    assert not assemble(bad).complete


def _completion_from(chunks: list[ChatChunk]) -> dict[str, Any]:
    a = assemble(chunks)
    assert a.complete
    return a.completion()


TOOL_COMPLETION: dict[str, Any] = {
    "id": ID,
    "object": "chat.completion",
    "created": CREATED,
    "model": MODEL,
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_A", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
                    {"id": "call_B", "type": "function", "function": {"name": "g", "arguments": "{}"}},
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
    "system_fingerprint": "fp_44709d6fcb",
}

TWO_CHOICES: dict[str, Any] = {
    "id": ID,
    "object": "chat.completion",
    "created": CREATED,
    "model": MODEL,
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "first"},
            "logprobs": {"content": [{"token": "first", "logprob": -0.5, "bytes": None, "top_logprobs": []}]},
            "finish_reason": "stop",
        },
        {
            "index": 1,
            "message": {"role": "assistant", "content": "", "reasoning_content": "hmm"},
            "logprobs": None,
            "finish_reason": "length",
        },
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    "service_tier": "default",
}


@pytest.mark.parametrize("include_usage", [True, False], ids=["usage", "no-usage"])
@pytest.mark.parametrize(
    "completion",
    [
        pytest.param(_completion_from(text_stream(["Hel", "lo"])), id="text"),
        pytest.param(TOOL_COMPLETION, id="tool-calls"),
        pytest.param(TWO_CHOICES, id="two-choices"),
    ],
)
def test_replay_round_trips_through_the_assembler(completion: dict[str, Any], include_usage: bool) -> None:
    original = copy.deepcopy(completion)
    chunks = replay(completion, include_usage)
    assert completion == original  # replay does not modify the stored completion
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all((c["id"], c["created"], c["model"]) == (ID, CREATED, MODEL) for c in chunks)

    a = assemble([from_wire(c) for c in chunks])
    assert a.complete
    again = a.completion()
    if include_usage:
        assert again == completion
    else:
        assert "usage" not in again
        assert again == {k: v for k, v in completion.items() if k != "usage"}


def test_replay_usage_chunk_only_with_include_usage() -> None:
    completion = _completion_from(text_stream(["x"]))
    with_usage = replay(completion, True)
    assert len(with_usage) == 3
    assert [c["usage"] for c in with_usage[:2]] == [None, None]
    assert with_usage[2]["choices"] == []
    assert with_usage[2]["usage"] == USAGE.to_wire()

    without = replay(completion, False)
    assert len(without) == 2
    assert all("usage" not in c for c in without)
    assert all(c["choices"] for c in without)


def test_replay_shape() -> None:
    completion = _completion_from(text_stream(["Hello", " there"]))
    first, last = replay(completion, False)
    assert first["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": "Hello there"},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    assert last["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]


def test_replay_of_a_non_streaming_tool_call_completion_adds_indexes() -> None:
    (first, last, usage) = replay(TOOL_COMPLETION, True)
    calls = first["choices"][0]["delta"]["tool_calls"]
    assert [c["index"] for c in calls] == [0, 1]
    assert calls[0] == {"index": 0, **TOOL_COMPLETION["choices"][0]["message"]["tool_calls"][0]}
    assert calls[1] == {"index": 1, **TOOL_COMPLETION["choices"][0]["message"]["tool_calls"][1]}
    assert "content" not in first["choices"][0]["delta"]  # null fields are left out of the delta
    assert first["system_fingerprint"] == "fp_44709d6fcb"
    assert last["choices"][0]["finish_reason"] == "tool_calls"
    assert usage["usage"] == TOOL_COMPLETION["usage"]
    # the stored completion's calls are not given an index
    assert "index" not in TOOL_COMPLETION["choices"][0]["message"]["tool_calls"][0]


def test_replay_drops_null_and_empty_message_fields() -> None:
    completion = {
        "id": ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok", "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
    }
    first, _ = replay(completion, False)
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "ok"}
    a = assemble([from_wire(c) for c in replay(completion, False)])
    assert a.complete
    assert a.completion()["choices"][0]["message"] == {"role": "assistant", "content": "ok"}
