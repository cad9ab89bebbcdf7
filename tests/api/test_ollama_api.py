"""Ollama's API on aigw's port, through the official `ollama` Python client: a real daemon with a
tiny local GGUF (and a tiny embedding GGUF) and an OpenAI-type fake upstream; list, show, ps, chat
(whole and streamed, with tools), generate, embed, the load/unload convention, timing fields from
real measurements, and Ollama's error shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.daemon import DaemonProcess, serving
from tests.fixtures.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.process

ollama = pytest.importorskip("ollama")
pytest.importorskip("llama_cpp", reason="the 'local' extra is not installed")

LOCAL = "gguf/tiny:latest"
CLOUD = "up/gpt-test:latest"
HISTORY = [{"role": "user", "content": "The story so far: " + "once upon a time " * 8}]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    from tests.fixtures.tiny_gguf import write_tiny_llama

    home: Path = tmp_path_factory.mktemp("ollama")
    write_tiny_llama(home / "tiny.gguf")
    write_tiny_llama(home / "coder.gguf", fim=True, seed=3)
    up = FakeOpenAIServer().start()
    config = f"""
[cache]
mode = "off"

[providers.gguf]
type = "llama_cpp"
discover_models = false
models = {{ tiny = "{home}/tiny.gguf", coder = "{home}/coder.gguf", emb = {{ path = "{home}/tiny.gguf", \
embedding = true }} }}

[providers.up]
type = "openai"
base_url = "{up.base_url}"
api_key = "sk-test"
discover_models = false
models = ["gpt-test"]

[models.fast]
targets = [{{ provider = "gguf", model = "tiny" }}]
"""
    try:
        with serving(home, config) as d:
            yield d
    finally:
        up.stop()


@pytest.fixture
def client(daemon: DaemonProcess) -> Any:
    return ollama.Client(host=daemon.url)


def test_version_tags_and_show(client: Any) -> None:
    assert httpx.get(client._client.base_url.join("/api/version")).json()["version"]
    names = {m.model: m for m in client.list().models}
    assert {LOCAL, "gguf/emb:latest", CLOUD, "fast:latest"} <= set(names)
    local = names[LOCAL]
    assert local.size and local.size > 0 and local.digest and len(local.digest) == 64
    assert local.details.family == "llama" and local.details.format == "gguf"
    assert names[CLOUD].details.format == "api"
    shown = client.show(LOCAL)
    assert "completion" in shown.capabilities and "tools" in shown.capabilities
    assert any(k.endswith(".context_length") for k in shown.modelinfo)
    assert "embedding" in client.show("gguf/emb").capabilities
    with pytest.raises(ollama.ResponseError) as err:
        client.show("nope:latest")
    assert err.value.status_code == 404 and "nope" in err.value.error


def test_chat_whole_and_streamed_with_real_timing(client: Any) -> None:
    whole = client.chat(model=LOCAL, messages=HISTORY, options={"temperature": 0, "num_predict": 12})
    assert whole.done and whole.done_reason == "length" and whole.message.role == "assistant"
    assert whole.eval_count == 12 and whole.prompt_eval_count and whole.prompt_eval_count > 20
    assert whole.prompt_eval_duration > 0 and 0 < whole.eval_duration < whole.total_duration
    parts = list(
        client.chat(model=LOCAL, messages=HISTORY, stream=True, options={"temperature": 0, "num_predict": 12})
    )
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert parts[-1].done and not any(p.done for p in parts[:-1]) and parts[-1].eval_count == 12
    assert parts[-1].total_duration and parts[-1].eval_duration
    cloud = client.chat(model=CLOUD, messages=[{"role": "user", "content": "hello"}])
    assert cloud.message.content == "echo: hello" and cloud.done
    streamed = "".join(p.message.content for p in client.chat(model=CLOUD, messages=[
        {"role": "user", "content": "hi there"}], stream=True))  # fmt: skip
    assert streamed == "echo: hi there"


def test_chat_with_tools_through_a_cloud_target(client: Any) -> None:
    def get_weather(city: str) -> str:
        """Weather for a city.

        Args:
          city: the city
        """
        return "sunny"

    got = client.chat(
        model="up/tool-call", messages=[{"role": "user", "content": "Paris"}], tools=[get_weather]
    )
    (call,) = got.message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments == {"text": "Paris"}
    again = client.chat(
        model="up/tool-call",
        messages=[
            {"role": "user", "content": "Paris"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
        ],
        tools=[get_weather],
    )
    assert again.message.content == "echo: tool said sunny"


def test_generate_format_and_options(client: Any) -> None:
    out = client.generate(model="fast", prompt="Say something", system="Be brief", options={"num_predict": 5})
    assert out.done and out.eval_count == 5 and isinstance(out.response, str)
    parts = list(
        client.generate(model=LOCAL, prompt="Say", stream=True, options={"num_predict": 4, "seed": 1})
    )
    assert parts[-1].done and parts[-1].eval_count == 4
    n = {"type": "integer", "minimum": 0, "maximum": 9}
    schema = {"type": "object", "properties": {"n": n}, "required": ["n"], "additionalProperties": False}
    held = client.generate(model=LOCAL, prompt="a number", format=schema, options={"num_predict": 60})
    assert isinstance(json.loads(held.response)["n"], int)


def test_generate_raw_and_fill_in_the_middle(client: Any, daemon: DaemonProcess) -> None:
    coder = client.show("gguf/coder")
    assert "insert" in coder.capabilities and "insert" not in client.show(LOCAL).capabilities
    assert "message['content']" in coder.template  # the model's own chat template
    prefix, suffix, opts = "def f(x):\n    return ", "\n\nf(2)\n", {"temperature": 0, "num_predict": 8}
    fim = client.generate(model="gguf/coder", prompt=prefix, suffix=suffix, options=opts)
    same = httpx.post(f"{daemon.url}/v1/completions", json={
        "model": "gguf/coder", "prompt": prefix, "suffix": suffix, "max_tokens": 8, "temperature": 0,
    }).json()  # fmt: skip
    assert fim.response == same["choices"][0]["text"] and fim.eval_count == 8
    assert fim.prompt_eval_count == same["usage"]["prompt_tokens"] and fim.eval_duration > 0
    parts = list(client.generate(model="gguf/coder", prompt=prefix, suffix=suffix, options=opts, stream=True))
    assert "".join(p.response for p in parts) == fim.response and parts[-1].done
    templated = client.generate(model=LOCAL, prompt="hi", options=opts)
    raw = client.generate(model=LOCAL, prompt="user: hi\nassistant:", raw=True, options=opts)
    assert raw.response == templated.response  # the chat template's own prompt, written by hand
    assert raw.prompt_eval_count == templated.prompt_eval_count
    for bad, param in (({"suffix": "x"}, "suffix"), ({"template": "{{ .Prompt }}"}, "template")):
        with pytest.raises(ollama.ResponseError) as err:
            client.generate(model=LOCAL, prompt="x", **bad)
        assert err.value.status_code == 400 and param in err.value.error


def test_ps_and_the_load_unload_convention(client: Any) -> None:
    loaded = client.generate(model=LOCAL, prompt="")
    assert loaded.done_reason == "load"
    assert LOCAL in {m.model for m in client.ps().models}
    gone = client.generate(model=LOCAL, prompt="", keep_alive=0)
    assert gone.done_reason == "unload"
    assert LOCAL not in {m.model for m in client.ps().models}


def test_embed_and_the_older_embeddings(client: Any) -> None:
    out = client.embed(model="gguf/emb", input=["one", "two"])
    assert len(out.embeddings) == 2 and len(out.embeddings[0]) > 8 and out.prompt_eval_count
    single = client.embeddings(model="gguf/emb", prompt="one")
    assert single.embedding == pytest.approx(out.embeddings[0], abs=1e-5)


def test_errors_in_ollamas_shape(daemon: DaemonProcess) -> None:
    r = httpx.post(daemon.url + "/api/chat", json={"model": "nope", "messages": HISTORY}, timeout=30)
    assert r.status_code == 404 and set(r.json()) == {"error"}
    r = httpx.post(daemon.url + "/api/chat", json={"model": LOCAL, "messages": "x"}, timeout=30)
    assert r.status_code == 400 and "messages" in r.json()["error"]
    raw_image = {"model": LOCAL, "prompt": "x", "raw": True, "images": ["AA=="]}
    r = httpx.post(daemon.url + "/api/generate", json=raw_image, timeout=30)
    assert r.status_code == 400 and "images" in r.json()["error"]
    r = httpx.post(daemon.url + "/api/chat", content=b"{not json", timeout=30)
    assert r.status_code == 400 and set(r.json()) == {"error"}
    options = {"num_ctx": 8192, "num_predict": 2}
    body = {"model": LOCAL, "messages": HISTORY, "stream": False, "options": options}
    r = httpx.post(daemon.url + "/api/chat", json=body, timeout=30)
    assert r.status_code == 200 and r.headers["x-aigw-dropped"] == "options.num_ctx"


def test_pull_with_progress_then_delete(tmp_path: Path) -> None:
    """aigw's own pull behind /api/pull (from a stand-in Hub), its progress as the client reads it;
    the model is then served, and /api/delete removes it."""
    from tests.fixtures.daemon import free_port, write_config
    from tests.fixtures.fake_hub import FakeHub, HubFile
    from tests.fixtures.tiny_gguf import write_tiny_llama

    gguf = write_tiny_llama(tmp_path / "src.gguf")
    hub = FakeHub().start()
    hub.add("someorg/Tiny-GGUF", "tiny-q8.gguf", HubFile(gguf.read_bytes()))
    home = tmp_path / "home"
    port = free_port()
    write_config(home, f'[server]\nport = {port}\n[providers.local]\ntype = "llama_cpp"\n')
    d = DaemonProcess(home, port)
    d.env["HF_ENDPOINT"] = hub.url
    d.start()
    try:
        c = ollama.Client(host=d.url)
        events = list(c.pull("someorg/Tiny-GGUF/tiny-q8.gguf", stream=True))
        assert events[0].status == "pulling manifest" and events[-1].status == "success"
        got = [e for e in events if e.status.startswith("pulling tiny")]  # as bytes arrive, then verified
        assert got and all(e.total == gguf.stat().st_size for e in got)
        assert [e.completed for e in got] == sorted(e.completed for e in got)
        assert got[-1].completed == got[-1].total
        assert "local/tiny-q8:latest" in {m.model for m in c.list().models}
        out = c.chat(model="local/tiny-q8", messages=HISTORY, options={"num_predict": 3})
        assert out.eval_count == 3
        c.delete("local/tiny-q8")
        assert "local/tiny-q8:latest" not in {m.model for m in c.list().models}
        with pytest.raises(ollama.ResponseError) as err:
            c.delete("local/tiny-q8")
        assert err.value.status_code == 404
        with pytest.raises(ollama.ResponseError) as err:
            c.pull("someorg/Tiny-GGUF/missing.gguf")
        assert "does not exist" in err.value.error
    finally:
        assert d.terminate() == 0
        hub.stop()
    assert "Traceback" not in d.log(), d.log()


def test_latest_names_work_on_the_openai_api_too_and_keep_alive_stays_local(daemon: DaemonProcess) -> None:
    """VS Code lists models through /api/tags and chats through /v1/chat/completions with the
    listed `name:latest`; a cloud target never gets Ollama's keep_alive (its API would refuse it)."""
    import openai

    c = openai.OpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0)
    got = c.chat.completions.create(model="up/gpt-test:latest", messages=[{"role": "user", "content": "x"}])
    assert got.choices[0].message.content == "echo: x"
    local = c.chat.completions.create(model="fast:latest", messages=HISTORY, max_tokens=2)
    assert local.usage is not None and local.usage.completion_tokens == 2
    body = {
        "model": CLOUD,
        "messages": [{"role": "user", "content": "y"}],
        "stream": False,
        "keep_alive": "5m",
    }
    r = httpx.post(daemon.url + "/api/chat", json=body, timeout=30)
    assert r.status_code == 200 and r.json()["message"]["content"] == "echo: y"
    assert r.headers["x-aigw-dropped"] == "keep_alive"
    r = httpx.post(
        daemon.url + "/api/chat", json={**body, "model": LOCAL, "options": {"num_predict": 1}}, timeout=30
    )
    assert r.status_code == 200 and "x-aigw-dropped" not in r.headers


def test_every_error_on_an_ollama_path_is_ollamas(daemon: DaemonProcess) -> None:
    for method, path in (("POST", "/api/copy"), ("GET", "/api/chat"), ("POST", "/api/blobs/sha256:x")):
        r = httpx.request(method, daemon.url + path, timeout=30)
        assert r.status_code in (404, 405) and set(r.json()) == {"error"}, (path, r.text)
    r = httpx.post(daemon.url + "/api/show", content=b'{"model": "x"}', headers={"content-encoding": "br"})
    assert r.status_code == 415 and set(r.json()) == {"error"}


def test_embed_nothing_loads_and_a_bad_pull_name_is_a_clear_400(client: Any) -> None:
    assert client.embed(model="gguf/emb", input=[]).embeddings == []
    assert "gguf/emb:latest" in {m.model for m in client.ps().models}
    with pytest.raises(ollama.ResponseError) as err:
        client.pull("no-such-thing")
    assert err.value.status_code == 400 and "unknown model" in err.value.error


def test_keep_alive_on_a_load_pins_the_model_and_the_root_answers_as_ollamas(
    client: Any, daemon: DaemonProcess
) -> None:
    assert client.generate(model=LOCAL, prompt="", keep_alive=-1).done_reason == "load"
    (status,) = [m for m in daemon.aget("/admin/local").json()["loaded"] if m["model"] == "gguf/tiny"]
    assert status["keep_alive_s"] is None and status["unloads_in_s"] is None  # kept loaded
    client.generate(model=LOCAL, prompt="", keep_alive="10m")
    (status,) = [m for m in daemon.aget("/admin/local").json()["loaded"] if m["model"] == "gguf/tiny"]
    assert status["keep_alive_s"] == 600
    r = httpx.post(daemon.url + "/api/generate", json={"model": LOCAL, "prompt": "", "keep_alive": "soon"})
    assert r.status_code == 400 and "keep_alive" in r.json()["error"]
    assert httpx.get(daemon.url + "/").text == "Ollama is running"
