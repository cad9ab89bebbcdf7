"""Constrained decoding on both local engines, through a real daemon with the openai SDK: real
llama.cpp on the tiny generated GGUF and real mlx-lm on the tiny generated MLX model. A forced
tool call and a response_format schema must hold in every run — ranges, lengths, patterns and
enums included — and whatever cannot be enforced is refused naming it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest

from tests.fixtures.daemon import DaemonProcess, serving

pytestmark = pytest.mark.process

pytest.importorskip("llguidance", reason="the 'local' extra (llguidance) is not installed")
pytest.importorskip("llama_cpp", reason="the 'local' extra is not installed")
pytest.importorskip("mlx_lm", reason="the 'mlx' extra is not installed")

ENGINES = ["gguf/tiny", "mlx/tiny-mlx"]
MSG = [{"role": "user", "content": "What is the weather in Oslo this week?"}]
WEATHER_PARAMS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2, "maxLength": 12, "pattern": "^[A-Za-z ]+$"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "days", "unit"],
    "additionalProperties": False,
}
TIME_PARAMS = {
    "type": "object",
    "properties": {"zone": {"type": "string", "maxLength": 8}},
    "required": ["zone"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_PARAMS}},
    {"type": "function", "function": {"name": "get_time", "parameters": TIME_PARAMS}},
]
PARAMS = {"get_weather": WEATHER_PARAMS, "get_time": TIME_PARAMS}
SEEDS = range(20)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    from tests.fixtures.tiny_gguf import write_tiny_llama
    from tests.fixtures.tiny_mlx import write_tiny_mlx

    home: Path = tmp_path_factory.mktemp("constrained")
    write_tiny_llama(home / "tiny.gguf")
    qwen = (Path(__file__).parent.parent / "fixtures" / "templates" / "qwen3.jinja").read_text()
    write_tiny_llama(home / "tiny-qwen.gguf", chat_template=qwen, n_ctx=4096)
    write_tiny_mlx(home / "models" / "tiny-mlx")
    with serving(
        home,
        f"""
[providers.gguf]
type = "llama_cpp"
discover_models = false

[providers.gguf.models]
tiny = "{home}/tiny.gguf"
tiny-qwen = "{home}/tiny-qwen.gguf"

[providers.mlx]
type = "mlx"
""",
    ) as d:
        yield d


@pytest.fixture
def client(daemon: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0)


def streamed_call(client: openai.OpenAI, **kw: Any) -> tuple[str, str, str, str | None]:
    """(id, name, arguments, finish_reason) of a streamed tool call, its deltas joined."""
    cid = name = args = ""
    finish = None
    for chunk in client.chat.completions.create(stream=True, **kw):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                assert tc.index == 0
                if tc.id:
                    assert not cid and not args, "id and name come first, once"
                    cid, name = tc.id, tc.function.name if tc.function else ""
                args += (tc.function.arguments or "") if tc.function else ""
    return cid, name or "", args, finish


@pytest.mark.parametrize("model", ENGINES)
@pytest.mark.parametrize("choice", ["named", "required"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_forced_tool_calls_match_their_schema_in_every_run(
    client: openai.OpenAI, model: str, choice: str, stream: bool
) -> None:
    tool_choice: Any = (
        {"type": "function", "function": {"name": "get_weather"}} if choice == "named" else "required"
    )
    names = set()
    for seed in SEEDS:
        kw: dict[str, Any] = {
            "model": model, "messages": MSG, "tools": TOOLS, "tool_choice": tool_choice,
            "seed": seed, "temperature": 1.0, "max_tokens": 200,
        }  # fmt: skip
        if stream:
            cid, name, args, finish = streamed_call(client, **kw)
        else:
            resp = client.chat.completions.create(**kw)
            call = (resp.choices[0].message.tool_calls or [None])[0]
            assert call is not None and call.type == "function", resp
            cid, name, args, finish = (
                call.id,
                call.function.name,
                call.function.arguments,
                resp.choices[0].finish_reason,
            )
        assert cid.startswith("call_") and finish == "tool_calls"
        if choice == "named":
            assert name == "get_weather"
        jsonschema.validate(json.loads(args), PARAMS[name])
        names.add(name)
    assert names <= set(PARAMS)


@pytest.mark.parametrize("model", ENGINES)
def test_response_format_json_schema_holds_in_every_run(client: openai.OpenAI, model: str) -> None:
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 0, "maximum": 9},
            "tags": {
                "type": "array",
                "items": {"type": "string", "maxLength": 4},
                "minItems": 1,
                "maxItems": 3,
            },
            "day": {"type": "string", "format": "date"},
        },
        "required": ["n", "tags", "day"],
        "additionalProperties": False,
    }
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    for seed in SEEDS:
        resp = client.chat.completions.create(
            model=model, messages=MSG, response_format=fmt, seed=seed, temperature=1.0, max_tokens=200
        )
        assert resp.choices[0].finish_reason == "stop"
        data = json.loads(resp.choices[0].message.content or "")
        jsonschema.validate(data, schema, format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize("model", ENGINES)
def test_a_tool_loop_runs_through_the_sdk(client: openai.OpenAI, model: str) -> None:
    first = client.chat.completions.create(
        model=model,
        messages=MSG,
        tools=TOOLS,
        tool_choice="required",
        max_tokens=200,
        seed=1,  # type: ignore[arg-type]
    )
    call = (first.choices[0].message.tool_calls or [])[0]
    messages: list[Any] = [
        *MSG,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"forecast": "sunny"}'},
    ]
    answer = client.chat.completions.create(
        model=model,
        messages=messages,
        tools=TOOLS,
        tool_choice="none",
        max_tokens=8,
        temperature=0,  # type: ignore[arg-type]
    )
    assert answer.choices[0].message.tool_calls is None
    assert answer.choices[0].message.content and answer.choices[0].finish_reason == "length"
    # the model read its own call and the result: both are in the prompt it was given
    assert answer.usage is not None and first.usage is not None
    assert answer.usage.prompt_tokens > first.usage.prompt_tokens + len(call.function.arguments)


@pytest.mark.parametrize("model", ENGINES)
@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"tools": TOOLS}, "tool_choice"),  # auto, on a model of no known tool-call family
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "string", "format": "weird"}},
                }
            },
            "response_format",
        ),
        (
            {"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}},
            "tool_choice",
        ),
    ],
)
def test_what_cannot_be_enforced_is_refused_naming_it(
    client: openai.OpenAI, model: str, kwargs: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=model, messages=MSG, max_tokens=8, **kwargs)
    assert e.value.body is not None and e.value.body["param"] == param  # type: ignore[index]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_tools_on_auto_with_a_family_that_writes_tool_calls(
    client: openai.OpenAI, daemon: DaemonProcess, stream: bool
) -> None:
    """The Hermes-family preset (chosen by Qwen's template) parses the model's own calls; the tiny
    model writes none, so its text comes back as the answer, the tools shown in its prompt."""
    kw: Any = {"model": "gguf/tiny-qwen", "messages": MSG, "tools": TOOLS, "max_tokens": 6, "temperature": 0}
    if stream:
        chunks = list(client.chat.completions.create(stream=True, **kw))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text and chunks[-1].choices[0].finish_reason == "length"
    else:
        with_tools = client.chat.completions.create(**kw)
        assert with_tools.choices[0].message.content and with_tools.choices[0].finish_reason == "length"
        without = client.chat.completions.create(**{**kw, "tools": None})
        assert with_tools.usage and without.usage
        assert with_tools.usage.prompt_tokens > without.usage.prompt_tokens + 200  # the tools are shown


@pytest.mark.parametrize("model", ENGINES)
def test_a_forced_call_keeps_the_tools_own_definitions(client: openai.OpenAI, model: str) -> None:
    """Pydantic writes nested models as `$defs` with `$ref`s; the call's grammar keeps them."""
    params = {
        "$defs": {
            "Place": {
                "type": "object",
                "properties": {"city": {"enum": ["Oslo", "Rome"]}},
                "required": ["city"],
                "additionalProperties": False,
            }
        },
        "type": "object",
        "properties": {"where": {"$ref": "#/$defs/Place"}},
        "required": ["where"],
        "additionalProperties": False,
    }
    tools: Any = [{"type": "function", "function": {"name": "go", "parameters": params}}, *TOOLS]
    resp = client.chat.completions.create(
        model=model,
        messages=MSG,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "go"}},
        max_tokens=60,
        seed=1,
    )
    call = (resp.choices[0].message.tool_calls or [])[0]
    assert json.loads(call.function.arguments)["where"]["city"] in ("Oslo", "Rome")


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": "get_time"}}, "tool_choice"),
        (
            {
                "tools": TOOLS,
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": None, "tool_calls": [{"id": "a", "type": "function"}]},
                    {"role": "tool", "tool_call_id": "a", "content": "x"},
                ],
                "tool_choice": "required",
            },
            "messages",
        ),
    ],
)
def test_malformed_tool_requests_are_400s(client: openai.OpenAI, kwargs: dict[str, Any], param: str) -> None:
    kwargs = {"messages": MSG, **kwargs}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gguf/tiny", max_tokens=8, **kwargs)
    assert e.value.body is not None and e.value.body["param"] == param  # type: ignore[index]
