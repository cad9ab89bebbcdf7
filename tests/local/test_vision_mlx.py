"""Images on MLX through mlx-vlm, behind a real daemon: a tiny generated LLaVA directory in the
models dir, the openai SDK as the client. What the model sees changes its answer; text-only
requests and constrained decoding work on the same model; bad images are 400s."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.fixtures.daemon import DaemonProcess, serving
from tests.fixtures.tiny_mmproj import png

pytestmark = pytest.mark.process

pytest.importorskip("mlx_vlm", reason="the 'vision' extra (mlx-vlm) is not installed")

RED, BLUE = png(32, 32, (255, 0, 0)), png(32, 32, (0, 0, 255))


def ask(image: bytes, text: str = "what?") -> list[Any]:
    url = "data:image/png;base64," + base64.b64encode(image).decode()
    return [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}],
        }
    ]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    from tests.fixtures.tiny_mlx import write_tiny_mlx
    from tests.fixtures.tiny_vlm import write_tiny_vlm

    home: Path = tmp_path_factory.mktemp("vision-mlx")
    write_tiny_vlm(home / "models" / "seer-mlx")
    write_tiny_mlx(home / "models" / "blind-mlx")
    with serving(home, '[providers.mlx]\ntype = "mlx"\n') as d:
        yield d


@pytest.fixture
def client(daemon: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0)


def answer(client: openai.OpenAI, messages: list[Any], **kw: Any) -> str:
    resp = client.chat.completions.create(
        model="mlx/seer-mlx", messages=messages, max_tokens=10, **{"temperature": 0, **kw}
    )
    return resp.choices[0].message.content or ""


def test_what_the_mlx_model_sees_changes_its_answer(client: openai.OpenAI) -> None:
    red, blue = answer(client, ask(RED)), answer(client, ask(BLUE))
    assert red != blue and answer(client, ask(RED)) == red
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="mlx/seer-mlx", messages=ask(RED), max_tokens=10, temperature=0, stream=True
        )
        if c.choices
    )
    assert streamed == red


def test_text_and_constrained_output_on_the_vision_model(client: openai.OpenAI) -> None:
    assert answer(client, [{"role": "user", "content": "hi"}])
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}},
        "required": ["n"],
        "additionalProperties": False,
    }
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    for seed in range(5):
        data = json.loads(answer(client, ask(BLUE), response_format=fmt, seed=seed, temperature=1.0))
        assert 0 <= data["n"] <= 9


def test_listing_and_refusals(client: openai.OpenAI) -> None:
    listed = {m.id: m.model_dump()["capabilities"] for m in client.models.list()}
    assert "vision" in listed["mlx/seer-mlx"] and "vision" not in listed["mlx/blind-mlx"]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="mlx/blind-mlx", messages=ask(RED), max_tokens=2)
    assert e.value.param == "messages"
    bad = [
        {
            "role": "user",
            "content": [
                {
                    "type": "image_url",
                    "image_url": {
                        "url": "data:image/png;base64,"
                        + base64.b64encode(b"\x89PNG\r\n\x1a\nbroken").decode()
                    },
                }
            ],
        }
    ]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="mlx/seer-mlx", messages=bad, max_tokens=2)
    assert e.value.param == "messages"
