"""The agent dialects in front of a real local model (llama.cpp on a tiny GGUF): the official
`anthropic` SDK on /v1/messages and the `openai` SDK's responses API, whole and streamed."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.fixtures.daemon import DaemonProcess

pytestmark = pytest.mark.process


def test_messages_from_a_local_model(local_daemon: DaemonProcess) -> None:
    c = anthropic.Anthropic(base_url=local_daemon.url, api_key="unused", max_retries=0)
    msg = c.messages.create(
        model="tiny",
        max_tokens=8,
        messages=[{"role": "user", "content": "hello"}],
        extra_body={"temperature": 0},
    )
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    with c.messages.stream(
        model="tiny",
        max_tokens=8,
        messages=[{"role": "user", "content": "hello"}],
        extra_body={"temperature": 0},
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.usage.output_tokens > 0
    whole = "".join(b.text for b in msg.content if b.type == "text")
    assert text == whole  # greedy: the stream says what the whole answer said


def test_responses_from_a_local_model(local_daemon: DaemonProcess) -> None:
    c = openai.OpenAI(base_url=local_daemon.url + "/v1", api_key="unused", max_retries=0)
    first = c.responses.create(model="tiny", input="hello", max_output_tokens=8, temperature=0)
    assert first.status in ("completed", "incomplete") and first.usage is not None
    events = list(
        c.responses.create(model="tiny", input="hello", max_output_tokens=8, temperature=0, stream=True)
    )
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert streamed == first.output_text
    second = c.responses.create(
        model="tiny", input="and again", previous_response_id=first.id, max_output_tokens=8, temperature=0
    )
    assert second.previous_response_id == first.id and second.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens  # the earlier turn was sent again


def test_count_tokens_of_a_local_model_is_its_tokenizers(local_daemon: DaemonProcess) -> None:
    c = anthropic.Anthropic(base_url=local_daemon.url, api_key="unused", max_retries=0)
    messages: Any = [{"role": "user", "content": "hello there, how are you today?"}]
    counted = c.messages.count_tokens(model="tiny", messages=messages)
    msg = c.messages.create(model="tiny", max_tokens=1, messages=messages)
    assert counted.input_tokens == msg.usage.input_tokens  # what the model was fed, exactly
