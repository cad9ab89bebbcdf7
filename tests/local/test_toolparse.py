"""Tool calls a local model writes in its family's format, parsed whole and streamed — split at
every position and fed a character at a time — and each family's preset chosen by its real chat
template (fixtures from the models' own repositories, by way of llama.cpp's models/templates),
which renders the calls and results aigw gives it."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from aigw.local.presets import choose, load_presets
from aigw.local.toolparse import Calls, Parsed, parse_all, parser
from aigw.local.tools import AutoCallStream, template_messages

TEMPLATES = Path(__file__).parent.parent / "fixtures" / "templates"
WEATHER = ("get_weather", '{"city":"Oslo","days":3}')
TIME = ("get_time", '{"zone":"CET"}')

# (format, what a model of the family writes, its content, its reasoning, its calls)
CASES: list[tuple[str, str, str, str, list[tuple[str, str]]]] = [
    (
        "hermes",
        "Let me check both.\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "days": 3}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>',
        "Let me check both.\n\n",
        "",
        [WEATHER, TIME],
    ),
    (
        "qwen3_coder",
        "Checking.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n"
        "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>\n"
        "<tool_call>\n<function=get_time>\n<parameter=zone>\nCET\n</parameter>\n</function>\n</tool_call>",
        "Checking.\n\n",
        "",
        [WEATHER, TIME],
    ),
    (  # a closing tag inside a value (an agent writing about tool calls) is part of the value
        "hermes",
        '<tool_call>{"name": "get_weather", "arguments": {"city": "O\\"s </tool_call> lo", "days": 3}}'
        "</tool_call> Done.",
        " Done.",
        "",
        [("get_weather", '{"city":"O\\"s </tool_call> lo","days":3}')],
    ),
    (
        "qwen3_coder",
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo </tool_call> x\n</parameter>\n"
        "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
        "",
        "",
        [("get_weather", '{"city":"Oslo </tool_call> x","days":3}')],
    ),
    (
        "llama3",
        '{"name": "get_weather", "parameters": {"city": "Oslo", "days": 3}}',
        "",
        "",
        [WEATHER],
    ),
    (
        "llama3",
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Oslo", "days": 3}}; '
        '{"name": "get_time", "parameters": {"zone": "CET"}}',
        "",
        "",
        [WEATHER, TIME],
    ),
    (
        "mistral",
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Oslo", "days": 3}}, '
        '{"name": "get_time", "arguments": {"zone": "CET"}}]',
        "",
        "",
        [WEATHER, TIME],
    ),
    (
        "mistral",
        'Sure. [TOOL_CALLS]get_weather[ARGS]{"city": "Oslo", "days": 3}'
        '[TOOL_CALLS]get_time[ARGS]{"zone": "CET"}',
        "Sure. ",
        "",
        [WEATHER, TIME],
    ),
    (
        "harmony",
        "<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>commentary "
        'to=functions.get_weather <|constrain|>json<|message|>{"city": "Oslo", "days": 3}',
        "",
        "Need the weather.",
        [WEATHER],
    ),
    (
        "harmony",
        "<|channel|>analysis<|message|>Simple.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Hello there.",
        "Hello there.",
        "Simple.",
        [],
    ),
]
PLAIN = {  # answers that only look like calls stay text (calls to tools the request has not got too)
    "hermes": "a <tool a> b <tool_call>{not json}</tool_call> "
    '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call> c <tool_call>{',
    "qwen3_coder": "x <tool_call><function=f>broken</tool_call>",
    "llama3": '  {"name": "Alice", "age": 30}',
    "mistral": "[TOOL_CALLS] nothing like a call",
    "harmony": "no channels at all",
}


NAMES = frozenset({"get_weather", "get_time"})


def ids() -> Calls:
    counter = itertools.count()
    return Calls(lambda: f"call_{next(counter)}", NAMES)


def calls_of(p: Parsed) -> list[tuple[str, str]]:
    return [(c["function"]["name"], c["function"]["arguments"]) for c in p.calls]


def fed(fmt: str, pieces: list[str]) -> Parsed:
    p = parser(fmt, ids())
    out = Parsed()
    for piece in pieces:
        out.extend(p.add(piece))
    return out.extend(p.finish())


@pytest.mark.parametrize(("fmt", "text", "content", "reasoning", "calls"), CASES)
def test_a_whole_output_gives_its_text_reasoning_and_every_call(
    fmt: str, text: str, content: str, reasoning: str, calls: list[tuple[str, str]]
) -> None:
    got = parse_all(fmt, text, ids())
    assert (got.text, got.reasoning, calls_of(got)) == (content, reasoning, calls)
    assert [c["id"] for c in got.calls] == [f"call_{i}" for i in range(len(calls))]


@pytest.mark.parametrize(("fmt", "text", "content", "reasoning", "calls"), CASES)
def test_a_stream_split_at_every_position_gives_the_same(
    fmt: str, text: str, content: str, reasoning: str, calls: list[tuple[str, str]]
) -> None:
    for cut in range(len(text) + 1):
        got = fed(fmt, [text[:cut], text[cut:]])
        assert (got.text, got.reasoning, calls_of(got)) == (content, reasoning, calls), cut
    got = fed(fmt, list(text))
    assert (got.text, got.reasoning, calls_of(got)) == (content, reasoning, calls)


@pytest.mark.parametrize(("fmt", "text"), sorted(PLAIN.items()))
def test_what_only_looks_like_a_call_stays_text(fmt: str, text: str) -> None:
    got = parse_all(fmt, text, ids())
    assert got.calls == [] and got.text == text
    assert fed(fmt, list(text)).text == text


def test_streamed_deltas_give_id_and_name_first_then_arguments() -> None:
    s = AutoCallStream(ids())
    text = CASES[0][1]
    deltas = [d for ch in text for d in s.add("hermes", ch)] + s.finish()
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert calls[0]["id"] and calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert calls[1] == {"index": 0, "function": {"arguments": '{"city":"Oslo","days":3}'}}
    assert calls[2]["index"] == 1 and s.called == 2
    assert "".join(d.get("content", "") for d in deltas).strip() == "Let me check both."


CALL = {
    "id": "call_abc",
    "type": "function",
    "function": {"name": "get_time", "arguments": '{"zone": "CET"}'},
}
CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": "time?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_abc", "content": "12:00"},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The time in a zone",
            "parameters": {
                "type": "object",
                "properties": {"zone": {"type": "string"}},
                "required": ["zone"],
            },
        },
    }
]


@pytest.mark.parametrize(
    ("template", "family", "fmt", "call_shown", "result_shown"),
    [
        ("qwen3", "qwen3", "hermes", '{"name": "get_time", "arguments": {"zone": "CET"}}', "12:00"),
        ("qwen3-coder", "qwen3-coder", "qwen3_coder", "<function=get_time>\n<parameter=zone>\nCET", "12:00"),
        ("llama3.3", "llama3", "llama3", '{"name": "get_time", "parameters": {"zone": "CET"}}', "12:00"),
        ("mistral-nemo", "mistral", "mistral", '[TOOL_CALLS][{"name": "get_time"', "12:00"),
        ("gpt-oss", "gpt-oss", "harmony", "to=functions.get_time<|channel|>commentary json", "12:00"),
    ],
)
def test_each_familys_real_template_takes_its_preset_and_renders_calls_and_results(
    template: str, family: str, fmt: str, call_shown: str, result_shown: str
) -> None:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    text = (TEMPLATES / f"{template}.jinja").read_text()
    chosen = choose(load_presets(None), text)
    assert chosen is not None and (chosen.family, chosen.tool_format) == (family, fmt)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda v, indent=None: __import__("json").dumps(v, indent=indent)

    def fail(message: str) -> None:
        raise ValueError(message)

    prompt = env.from_string(text).render(
        messages=template_messages(CONVERSATION, "tool_calls" in text),
        tools=TOOLS,
        add_generation_prompt=True,
        bos_token="<s>",
        eos_token="</s>",
        raise_exception=fail,
        strftime_now=lambda fmt: "2026-12-06",
    )
    assert call_shown in prompt and result_shown in prompt and "get_time" in prompt


def test_a_template_that_knows_nothing_of_tool_calls_reads_them_as_text() -> None:
    flat = template_messages(CONVERSATION, False)
    assert flat[1]["content"] == '{"name":"get_time","arguments":{"zone":"CET"}}'
    shown = template_messages(CONVERSATION, True)
    assert shown[1]["tool_calls"][0]["id"] == shown[2]["tool_call_id"]  # ids kept paired
    assert len(shown[2]["tool_call_id"]) == 9 and shown[2]["tool_call_id"].isalnum()
