"""Continuous batching on llama.cpp, through a real daemon and the openai SDK: concurrent requests
decode together in one model's slots, each with its own sampling, stops, grammar and length, each
answering exactly what it answers alone; a client that goes away leaves at the next step."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.fixtures.daemon import DaemonProcess
from tests.local.conftest import start_local_daemon

pytestmark = pytest.mark.process

MODEL = "medium4"
PROMPTS = [f"tell story number {i} " * (i + 2) for i in range(4)]


@pytest.fixture(scope="module")
def daemon(gguf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    extra = f'{MODEL} = {{ path = "{gguf_dir}/medium.gguf", context = 2048, parallel = 4 }}'
    d = start_local_daemon(tmp_path_factory.mktemp("batching"), gguf_dir, extra=extra)
    yield d
    assert d.terminate() == 0
    assert "Traceback" not in d.log(), d.log()


@pytest.fixture
def client(daemon: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=daemon.url + "/v1",
        api_key="unused",
        max_retries=0,
        timeout=120,
        default_headers={"Cache-Control": "no-cache, no-store"},  # every answer is generated
    )


def ask(client: openai.OpenAI, prompt: str, **kw: Any) -> tuple[str, str, int, float, float]:
    """A streamed answer: text, finish reason, completion tokens, first-content and end times."""
    kw = {"max_tokens": 48, "temperature": 0, **kw}
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
        **kw,
    )
    text, finish, tokens, first = "", "", 0, 0.0
    for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                first = first or time.monotonic()
                text += choice.delta.content
            finish = choice.finish_reason or finish
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return text, finish, tokens, first, time.monotonic()


def together(client: openai.OpenAI, calls: list[dict[str, Any]]) -> list[tuple[str, str, int, float, float]]:
    out: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def one(i: int) -> None:
        start.wait()
        out[i] = ask(client, **calls[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(o is not None for o in out)
    return out


def test_four_concurrent_streams_answer_as_they_do_alone(client: openai.OpenAI) -> None:
    alone = [ask(client, p, max_tokens=400) for p in PROMPTS]
    batched = together(client, [{"prompt": p, "max_tokens": 400} for p in PROMPTS])
    assert [b[0] for b in batched] == [a[0] for a in alone]
    assert all(b[2] == 400 for b in batched)
    # they ran together: every stream had its first token before any of them ended
    assert max(b[3] for b in batched) < min(b[4] for b in batched)


def test_each_slot_keeps_its_own_sampling_stops_grammar_and_length(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 3, "maximum": 9}},
        "required": ["n"],
        "additionalProperties": False,
    }
    calls: list[dict[str, Any]] = [
        {"prompt": PROMPTS[0], "temperature": 0.9, "seed": 7},
        {"prompt": PROMPTS[1], "stop": ["e", "o"]},
        {
            "prompt": PROMPTS[2],
            "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
        },
        {"prompt": PROMPTS[3], "max_tokens": 3},
    ]
    alone = [ask(client, **c) for c in calls]
    batched = together(client, calls)
    assert [b[:3] for b in batched] == [a[:3] for a in alone]  # seeded sampling included
    sampled, stopped, constrained, short = batched
    assert "e" not in stopped[0] and "o" not in stopped[0] and stopped[1] == "stop"
    assert 3 <= json.loads(constrained[0])["n"] <= 9 and constrained[1] == "stop"
    assert short[2] == 3 and short[1] == "length"
    assert len(sampled[0]) > 0


def generated(daemon: DaemonProcess) -> int:
    status = daemon.aget("/admin/local").json()
    return sum(m["tokens_generated"] for m in status["loaded"] if m["model"] == f"local/{MODEL}")


def test_a_stream_whose_client_goes_away_leaves_and_the_others_go_on(
    client: openai.OpenAI, daemon: DaemonProcess
) -> None:
    expected = ask(client, PROMPTS[1], max_tokens=200)[0]
    before = generated(daemon)
    gone = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": PROMPTS[0]}],
        stream=True,
        max_tokens=1500,
        temperature=0,
    )
    stays: dict[str, str] = {}
    other = threading.Thread(target=lambda: stays.update(text=ask(client, PROMPTS[1], max_tokens=200)[0]))
    for chunk in gone:
        if chunk.choices and chunk.choices[0].delta.content:
            other.start()
            break
    gone.close()  # the client goes away after its first token
    other.join(120)
    assert stays["text"] == expected
    # the abandoned generation stopped early: far fewer than its 1,500 tokens were made
    assert generated(daemon) - before < 200 + 1000


@pytest.mark.parametrize(
    ("field", "value"), [("repeat_penalty", "x"), ("top_k", 2.5), ("min_p", 3), ("presence_penalty", True)]
)
def test_a_bad_sampling_value_is_a_400_and_the_others_go_on(
    client: openai.OpenAI, field: str, value: Any
) -> None:
    expected = ask(client, PROMPTS[2], max_tokens=100)[0]
    out: dict[str, str] = {}
    other = threading.Thread(target=lambda: out.update(text=ask(client, PROMPTS[2], max_tokens=100)[0]))
    other.start()
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, PROMPTS[0], extra_body={field: value})
    other.join(120)
    assert err.value.param == field
    assert out["text"] == expected
