"""A pull that cannot happen is one line that says why and what to do: no huggingface_hub, no route
to the Hub, or no engine to run the model; install hints work from a clone and from an install."""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from aigw.errors import InvalidRequest
from aigw.extras import clone_of, hint_for, install_hint
from aigw.local.catalog import load_catalog
from aigw.local.pull import PullError, PullTarget, pull

ROOT = Path(__file__).resolve().parents[2]
APPLE_SILICON = {"sys_platform": "darwin", "platform_machine": "arm64"}
LINUX = {"sys_platform": "linux", "platform_machine": "x86_64"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_pull_without_huggingface_hub_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in [m for m in sys.modules if m.partition(".")[0] == "huggingface_hub"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import raises ModuleNotFoundError
    with pytest.raises(PullError) as err:
        pull(PullTarget("tiny", "acme/Tiny-GGUF", "tiny.gguf", None), tmp_path, progress=False)
    assert "huggingface_hub" in err.value.message and install_hint("local") in err.value.message
    assert "\n" not in err.value.message


@pytest.mark.parametrize("target", [
    PullTarget("tiny", "acme/Tiny-GGUF", "tiny.gguf", None),
    PullTarget("tiny", "acme/Tiny-MLX", None, None),
])  # fmt: skip
def test_pull_with_no_route_to_the_hub_says_it_is_unreachable(
    target: PullTarget, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("huggingface_hub", reason="the 'local' extra (huggingface-hub) is not installed")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(PullError) as err:
        pull(target, tmp_path, progress=False)
    assert "Hub" in err.value.message and "unreachable" in err.value.message
    assert "does not exist" not in err.value.message


def test_chat_offer_names_what_to_install_when_nothing_here_can_pull_or_run_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from aigw.cli.chat import _offer_pull

    monkeypatch.setenv("AIGW_HOME", str(tmp_path))
    monkeypatch.delenv("AIGW_CONFIG", raising=False)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    real = importlib.util.find_spec
    blocked = {"huggingface_hub", "llama_cpp", "mlx_lm", "mlx"}
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, package=None: None if name in blocked else real(name, package),
    )
    with pytest.raises(InvalidRequest) as err:
        _offer_pull(assume_yes=True)
    message = err.value.message
    assert "pip install" in message and "huggingface_hub" in message
    assert not any(tmp_path.rglob("*.gguf"))


def test_install_hint_from_a_clone_names_its_folder() -> None:
    text = json.dumps({"url": "file:///home/me/src/aigw", "dir_info": {"editable": True}})
    clone = clone_of(text)
    assert clone == Path("/home/me/src/aigw")
    assert hint_for("local", clone) == "pip install -e '/home/me/src/aigw[local]'"
    spaced = clone_of(json.dumps({"url": "file:///home/me/my%20src/aigw", "dir_info": {"editable": True}}))
    assert hint_for("rag", spaced) == "pip install -e '/home/me/my src/aigw[rag]'"


@pytest.mark.parametrize("direct_url", [
    None,
    "",
    json.dumps({"url": "file:///tmp/aigw-0.1.0-py3-none-any.whl", "archive_info": {}}),
    json.dumps({"url": "file:///home/me/src/aigw", "dir_info": {}}),  # `pip install .`: a copy
    json.dumps({"url": "https://github.com/x/aigw", "vcs_info": {"vcs": "git"}}),
    "not json",
])  # fmt: skip
def test_install_hint_from_an_install_names_the_package(direct_url: str | None) -> None:
    assert hint_for("local", clone_of(direct_url)) == "pip install 'aigw[local]'"


def _base_dependencies(environment: dict[str, str]) -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = [Requirement(d) for d in deps]
    return {r.name for r in reqs if r.marker is None or r.marker.evaluate(environment)}


def test_apple_silicon_base_install_can_pull_and_run_the_default_model() -> None:
    on_mac = _base_dependencies(APPLE_SILICON)
    assert {"mlx-lm", "huggingface-hub"} <= on_mac
    assert not {"mlx-lm", "huggingface-hub"} & _base_dependencies(LINUX)
    catalog = load_catalog()
    assert catalog.entries[catalog.default].mlx is not None  # what a Mac pulls by default
