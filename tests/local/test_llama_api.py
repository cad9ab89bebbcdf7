"""llama.cpp through aigw's HTTP API with the openai SDK: the real engine on a generated GGUF."""

from __future__ import annotations

import concurrent.futures
import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fixtures.daemon import DaemonProcess

pytestmark = pytest.mark.process

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def client(local_daemon: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=local_daemon.url + "/v1", api_key="unused", max_retries=0)


def local_status(d: DaemonProcess) -> dict[str, Any]:
    return dict(d.aget("/admin/local").json())


def slot(d: DaemonProcess, model: str) -> dict[str, Any] | None:
    return next((m for m in local_status(d)["loaded"] if m["model"] == model), None)


def wait_for(cond: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_chat_counts_usage_with_the_models_tokenizer(client: openai.OpenAI, gguf_dir: Path) -> None:
    import llama_cpp

    resp = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=16, temperature=0)
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage is not None and resp.usage.completion_tokens == 16
    vocab = llama_cpp.Llama(str(gguf_dir / "tiny.gguf"), vocab_only=True, verbose=False)
    expected = len(vocab.tokenize(b"<s>user: hi\nassistant:", add_bos=False, special=True))
    assert expected == 25  # <s> and one token per byte
    assert resp.usage.prompt_tokens == expected
    text = resp.choices[0].message.content or ""
    assert len(text.encode()) == 16  # this vocabulary has one token per byte


def test_greedy_is_deterministic_and_stream_equals_non_stream(client: openai.OpenAI) -> None:
    a = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=20, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=MSG,
            max_tokens=20,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == a.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 20
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_stop_sequence_ends_generation_before_it(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=30, temperature=0)
    text = full.choices[0].message.content or ""
    stop = text[6:9]
    cut = client.chat.completions.create(
        model="tiny", messages=MSG, max_tokens=30, temperature=0, stop=[stop]
    )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == text[: text.index(stop)]


def test_seed_makes_sampling_repeatable(client: openai.OpenAI) -> None:
    runs = [
        client.chat.completions.create(model="tiny", messages=MSG, max_tokens=20, temperature=1.0, seed=42)
        for _ in range(2)
    ]
    assert runs[0].choices[0].message.content == runs[1].choices[0].message.content


def test_json_schema_output_parses_and_matches(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer", "minimum": -99, "maximum": 99}, "b": {"type": "boolean"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    }
    resp = client.chat.completions.create(
        model="tiny",
        messages=MSG,
        max_tokens=100,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )
    data = json.loads(resp.choices[0].message.content or "")
    assert set(data) == {"a", "b"} and isinstance(data["a"], int) and isinstance(data["b"], bool)


def test_json_object_output_parses(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="tiny", messages=MSG, max_tokens=200, temperature=0, response_format={"type": "json_object"}
    )
    assert resp.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(resp.choices[0].message.content or ""), dict)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tool_choice"),
        ({"logprobs": True}, "logprobs"),
        ({"n": 2}, "n"),
        ({"extra_body": {"logit_bias_v2": 1}}, "logit_bias_v2"),
        ({"extra_body": {"keep_alive": "soon"}}, "keep_alive"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}
                ]
            },
            "messages",
        ),
    ],
)
def test_what_the_model_cannot_honour_is_refused_naming_it(
    client: openai.OpenAI, kwargs: dict[str, Any], param: str
) -> None:
    kw: dict[str, Any] = {"model": "tiny", "messages": MSG, "max_tokens": 4, **kwargs}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(**kw)
    assert e.value.param == param


def test_embeddings_from_an_embedding_model(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(model="emb", input=["hello", "a different text"])
    v0, v1 = resp.data[0].embedding, resp.data[1].embedding
    assert len(v0) == 64 and v0 != v1
    assert abs(sum(x * x for x in v0) - 1.0) < 1e-3
    assert resp.usage.prompt_tokens > 2


def test_chat_model_does_not_embed_and_embedding_model_does_not_chat(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="tiny", input="x")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="emb", messages=MSG)


def test_concurrent_requests_all_complete_through_the_queue(client: openai.OpenAI) -> None:
    def one(i: int) -> str | None:
        r = client.chat.completions.create(
            model="medium", messages=[{"role": "user", "content": f"q{i}"}], max_tokens=50, temperature=0
        )
        return r.choices[0].finish_reason

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        assert list(pool.map(one, range(3))) == ["length"] * 3


def test_queue_overflow_is_503_with_retry_after(local_daemon: DaemonProcess) -> None:
    def one(i: int) -> httpx.Response:
        # Each request differs: identical ones would share one generation (the cache's single-flight).
        msgs = [{"role": "user", "content": f"Request {i}: say hello."}]
        body = {"model": "medium", "messages": msgs, "max_tokens": 400, "temperature": 0}
        return httpx.post(local_daemon.url + "/v1/chat/completions", json=body, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(one, range(6)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) >= 3 and 503 in codes, codes
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "1"
    assert "queue limit" in busy.json()["error"]["message"]


def test_disconnect_stops_generation(local_daemon: DaemonProcess) -> None:
    before = (slot(local_daemon, "local/medium") or {}).get("tokens_generated", 0)
    body = {"model": "medium", "messages": MSG, "max_tokens": 3000, "temperature": 0, "stream": True}
    with httpx.stream("POST", local_daemon.url + "/v1/chat/completions", json=body, timeout=60) as resp:
        for line in resp.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                break
    wait_for(lambda: (slot(local_daemon, "local/medium") or {}).get("state") == "idle")
    generated = (slot(local_daemon, "local/medium") or {})["tokens_generated"] - before
    assert generated < 500, generated  # 3000 had the client stayed


def test_keep_alive_per_request_unloads(local_daemon: DaemonProcess, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="tiny2", messages=MSG, max_tokens=2, extra_body={"keep_alive": "1s"})
    st = slot(local_daemon, "local/tiny2")
    assert st is not None and st["keep_alive_s"] == 1.0
    wait_for(lambda: slot(local_daemon, "local/tiny2") is None, timeout=10)
    client.chat.completions.create(model="tiny2", messages=MSG, max_tokens=2, extra_body={"keep_alive": -1})
    assert (slot(local_daemon, "local/tiny2") or {})["unloads_in_s"] is None


def test_health_detailed_shows_loaded_models(local_daemon: DaemonProcess, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="tiny", messages=MSG, max_tokens=2)
    local = local_daemon.get("/health/detailed").json()["local"]
    tiny = next(m for m in local["loaded"] if m["model"] == "local/tiny")
    assert tiny["memory_bytes"] > 400_000 and tiny["queue_depth"] == 0 and tiny["unloads_in_s"] > 0
    assert local["used_bytes"] <= local["budget_bytes"]


def test_disconnect_stops_a_non_streaming_generation(local_daemon: DaemonProcess) -> None:
    import socket

    before = (slot(local_daemon, "local/medium") or {}).get("tokens_generated", 0)
    body = json.dumps({"model": "medium", "messages": MSG, "max_tokens": 3000, "temperature": 0}).encode()
    with socket.create_connection(("127.0.0.1", local_daemon.port)) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        wait_for(lambda: (slot(local_daemon, "local/medium") or {}).get("state") == "busy")
    wait_for(lambda: (slot(local_daemon, "local/medium") or {}).get("state") == "idle")
    generated = (slot(local_daemon, "local/medium") or {})["tokens_generated"] - before
    assert generated < 1500, generated  # 3000 had the client stayed
    assert "Traceback" not in local_daemon.log()
