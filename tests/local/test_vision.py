"""Images on llama.cpp through a real daemon: the tiny GGUF with a tiny generated vision projector
(mmproj) beside it, real mtmd, the openai and anthropic SDKs as clients. What the model sees
changes what it answers; images come as data: URLs or local files; bad images are 400s."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.fixtures.daemon import DaemonProcess, serving
from tests.fixtures.tiny_mmproj import png

pytestmark = pytest.mark.process

pytest.importorskip("llama_cpp", reason="the 'local' extra is not installed")

RED, BLUE = png(32, 32, (255, 0, 0)), png(32, 32, (0, 0, 255))


def data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


def ask(url: str, text: str = "what is this?") -> list[Any]:
    return [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}],
        }
    ]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    from tests.fixtures.tiny_gguf import write_tiny_llama
    from tests.fixtures.tiny_mmproj import write_tiny_mmproj

    home: Path = tmp_path_factory.mktemp("vision")
    models = home / "models"
    models.mkdir()
    write_tiny_llama(models / "seer.gguf")
    write_tiny_mmproj(models / "seer.mmproj.gguf")  # found beside the model
    write_tiny_llama(home / "configured.gguf")
    write_tiny_mmproj(home / "proj.gguf")
    write_tiny_llama(home / "blind.gguf")
    (home / "pictures").mkdir()
    (home / "pictures" / "red.png").write_bytes(RED)
    (home / "pictures" / "notes.txt").write_text("not an image")
    (home / "outside.png").write_bytes(RED)
    (home / "pictures" / "link.png").symlink_to(home / "outside.png")
    with serving(
        home,
        f"""
[local]
image_dirs = ["{home}/pictures"]

[providers.gguf]
type = "llama_cpp"

[providers.gguf.models]
configured = {{ path = "{home}/configured.gguf", mmproj = "{home}/proj.gguf" }}
blind = "{home}/blind.gguf"
""",
    ) as d:
        yield d


@pytest.fixture
def client(daemon: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0)


def answer(client: openai.OpenAI, model: str, messages: list[Any], **kw: Any) -> str:
    resp = client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0, **kw)
    return resp.choices[0].message.content or ""


@pytest.mark.parametrize("model", ["gguf/seer", "gguf/configured"])
def test_what_the_model_sees_changes_its_answer(client: openai.OpenAI, model: str) -> None:
    text_only: list[Any] = [{"role": "user", "content": "what is this?"}]
    before = answer(client, model, text_only)
    red, blue = answer(client, model, ask(data_url(RED))), answer(client, model, ask(data_url(BLUE)))
    assert red != blue
    assert answer(client, model, ask(data_url(RED))) == red  # the same image, the same greedy answer
    assert answer(client, model, text_only) == before  # no image state is reused by a later prompt


def test_images_count_in_usage_and_stream(client: openai.OpenAI) -> None:
    with_image = client.chat.completions.create(model="gguf/seer", messages=ask(data_url(RED)), max_tokens=1)
    without = client.chat.completions.create(
        model="gguf/seer", messages=[{"role": "user", "content": "what is this?"}], max_tokens=1
    )
    assert with_image.usage and without.usage
    assert with_image.usage.prompt_tokens >= without.usage.prompt_tokens + 4  # four image positions
    chunks = list(
        client.chat.completions.create(
            model="gguf/seer", messages=ask(data_url(RED)), max_tokens=12, temperature=0, stream=True
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == answer(client, "gguf/seer", ask(data_url(RED)))


def test_a_local_file_is_an_image_too(client: openai.OpenAI, daemon: DaemonProcess) -> None:
    by_file = answer(client, "gguf/seer", ask(f"file://{daemon.home}/pictures/red.png"))
    assert by_file == answer(client, "gguf/seer", ask(data_url(RED)))
    assert answer(client, "gguf/seer", ask(f"{daemon.home}/pictures/red.png")) == by_file


def test_the_anthropic_dialect_sends_images_too(daemon: DaemonProcess, client: openai.OpenAI) -> None:
    c = anthropic.Anthropic(base_url=daemon.url, api_key="unused", max_retries=0)
    block: Any = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(BLUE).decode()},
    }
    msg = c.messages.create(
        model="gguf/seer",
        max_tokens=12,
        extra_body={"temperature": 0},
        messages=[{"role": "user", "content": [block, {"type": "text", "text": "what is this?"}]}],
    )
    assert msg.content[0].type == "text" and msg.content[0].text == answer(
        client, "gguf/seer", ask(data_url(BLUE))
    )


@pytest.mark.parametrize(
    ("model", "url", "says"),
    [
        ("gguf/blind", data_url(RED), "vision"),  # no projector: the capability contract refuses
        ("gguf/seer", "https://example.com/cat.png", "web URLs"),
        ("gguf/seer", "data:image/png;base64,@@@", "base64"),
        ("gguf/seer", data_url(b"GIF89a" + b"\0" * 20), "could not be decoded"),
        ("gguf/seer", "HOME/pictures/notes.txt", "not a PNG"),
        ("gguf/seer", "relative/cat.png", "no such image in [local] image_dirs"),
        ("gguf/seer", "HOME/pictures/missing.png", "no such image in [local] image_dirs"),
        ("gguf/seer", "HOME/outside.png", "no such image in [local] image_dirs"),  # not in image_dirs
        ("gguf/seer", "HOME/pictures/link.png", "no such image in [local] image_dirs"),  # leads out
        ("gguf/seer", "HOME/pictures", "no such image in [local] image_dirs"),  # not a file
        ("gguf/seer", "file://elsewhere/HOME/pictures/red.png", "no such image"),
    ],
)
def test_bad_images_are_400s_naming_the_messages(
    client: openai.OpenAI, daemon: DaemonProcess, model: str, url: str, says: str
) -> None:
    url = url.replace("HOME", str(daemon.home).lstrip("/") if url.startswith("file://") else str(daemon.home))
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=model, messages=ask(url), max_tokens=2)
    assert e.value.param == "messages" and says in str(e.value.message)
    assert answer(client, "gguf/seer", ask(data_url(RED)))  # and the daemon goes on serving


def test_models_list_says_which_models_see(client: openai.OpenAI) -> None:
    listed = {m.id: m.model_dump()["capabilities"] for m in client.models.list()}
    assert "vision" in listed["gguf/seer"] and "vision" in listed["gguf/configured"]
    assert "vision" not in listed["gguf/blind"]
    assert not any("mmproj" in name for name in listed)  # a projector is not a model


def test_local_image_files_are_off_unless_folders_are_named(tmp_path: Path) -> None:
    from aigw.errors import InvalidRequest
    from aigw.local.images import image_bytes

    (tmp_path / "red.png").write_bytes(RED)
    with pytest.raises(InvalidRequest, match="local image files are off"):
        image_bytes(str(tmp_path / "red.png"), 0)
    assert image_bytes(str(tmp_path / "red.png"), 0, (tmp_path,)) == RED
    import os

    os.mkfifo(tmp_path / "fifo.png")  # a pipe never blocks the model's thread: it is refused
    with pytest.raises(InvalidRequest, match="no such image"):
        image_bytes(str(tmp_path / "fifo.png"), 0, (tmp_path,))
