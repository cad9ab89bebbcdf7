"""The `cross_encoder` provider type in process: a real (tiny, random) cross-encoder scored through
the provider, compared with sentence-transformers' own CrossEncoder.predict on the same pairs."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from aigw.config import load_config
from aigw.domain import ChatRequest
from aigw.engine.slot import LocalModelError
from aigw.errors import CapabilityError, ConfigError, ModelNotFound
from aigw.local.cross_encoder import TYPE, CrossEncoderConfig
from aigw.local.cross_encoder.provider import CrossEncoderProvider, load_cross_encoder
from aigw.paths import Paths
from aigw.providers.base import Reranking
from aigw.providers.registry import ProviderRegistry
from aigw.providers.spec import ProbeEnv
from aigw.reranking import RerankRequest
from tests.fixtures.tiny_cross_encoder import write_tiny_cross_encoder

pytest.importorskip("sentence_transformers", reason="the 'rag' extra is not installed")

QUERY = "how do I rotate the API key"
DOCS = [
    "Rotate the API key with aigw keys create, then revoke the old one.",
    "Boil the pasta for nine minutes in salted water.",
    "Prune roses in late winter, just above an outward-facing bud.",
    "keys keys keys",
    "",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_cross_encoder(tmp_path_factory.mktemp("ce") / "tiny-rr")


@pytest.fixture(scope="module")
def reference(model_dir: Path) -> Any:
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(model_dir), device="cpu")


def rerank(model: str = "tiny", **body: Any) -> RerankRequest:
    return RerankRequest({"model": model, "query": QUERY, "documents": DOCS, **body}, model)


def test_scores_are_the_cross_encoders_own(model_dir: Path, reference: Any) -> None:
    provider = CrossEncoderProvider("rr", {"tiny": model_dir})
    assert isinstance(provider, Reranking)
    resp = asyncio.run(provider.rerank(rerank()))
    expected = reference.predict([(QUERY, d) for d in DOCS], show_progress_bar=False)
    assert [r["index"] for r in resp.results] == list(range(len(DOCS)))  # the pipeline sorts them
    scores = [r["relevance_score"] for r in resp.results]
    assert scores == pytest.approx([float(e) for e in expected], abs=1e-5)
    assert all(0 < s < 1 for s in scores)
    assert len(set(scores)) == len(scores)  # the tiny model separates them: an order is defined
    encoded = reference.tokenizer([QUERY] * len(DOCS), DOCS, truncation=True)
    assert resp.usage is not None
    assert resp.usage.total_tokens == resp.usage.prompt_tokens == sum(len(i) for i in encoded["input_ids"])
    assert resp.model == "tiny" and resp.id.startswith("rerank-")


def test_a_model_loads_on_first_use_and_runs_one_request_at_a_time(model_dir: Path) -> None:
    watched: list[Watched] = []

    def loader(path: Path) -> Any:
        watched.append(Watched(load_cross_encoder(path)))
        return watched[-1]

    provider = CrossEncoderProvider("rr", {"tiny": model_dir, "other": model_dir}, loader=loader)
    assert watched == []  # nothing loaded by making the provider, or listing its models
    assert [m.id for m in asyncio.run(provider.list_models())] == ["tiny", "other"]

    async def four() -> list[Any]:
        return list(await asyncio.gather(*(provider.rerank(rerank()) for _ in range(4))))

    answers = asyncio.run(four())
    assert len(watched) == 1 and watched[0].calls == 4 and watched[0].most == 1
    assert all(a.results == answers[0].results for a in answers)
    assert provider.fingerprint("tiny") is not None and provider.fingerprint("nope") is None


class Watched:
    """A real CrossEncoder, counting how many predictions ran at once."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.running = self.most = self.calls = 0

    def predict(self, *args: Any, **kw: Any) -> Any:
        self.running += 1
        self.calls += 1
        self.most = max(self.most, self.running)
        try:
            return self._model.predict(*args, **kw)
        finally:
            self.running -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def test_what_it_cannot_do_is_refused(model_dir: Path) -> None:
    provider = CrossEncoderProvider("rr", {"tiny": model_dir})
    with pytest.raises(CapabilityError) as e:
        asyncio.run(provider.rerank(rerank(max_tokens_per_doc=100)))
    assert e.value.param == "max_tokens_per_doc" and e.value.status_code == 400
    with pytest.raises(ModelNotFound):
        asyncio.run(provider.rerank(rerank("nope")))
    chat = ChatRequest({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}, "tiny")
    with pytest.raises(CapabilityError, match="is a reranker: it cannot chat"):
        asyncio.run(provider.chat(chat))


def test_a_model_that_cannot_load_is_a_local_model_error(tmp_path: Path) -> None:
    two = write_tiny_cross_encoder(tmp_path / "two-labels", labels=2)
    provider = CrossEncoderProvider("rr", {"gone": tmp_path / "nowhere", "two": two})
    with pytest.raises(LocalModelError, match=r"no config\.json") as e:
        asyncio.run(provider.rerank(rerank("gone")))
    assert e.value.status_code == 502
    with pytest.raises(LocalModelError, match="2 labels; a reranker scores with one"):
        asyncio.run(provider.rerank(rerank("two")))


def test_the_type_is_registered_configured_and_probed(tmp_path: Path, model_dir: Path) -> None:
    assert ProviderRegistry.from_entry_points().get("cross_encoder") is TYPE
    assert TYPE.is_local and TYPE.from_environment({"OPENAI_API_KEY": "x"}) == {}
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[providers.rr]\ntype = "cross_encoder"\nmodels = {{ tiny = "{model_dir}" }}\n')
    types = ProviderRegistry(types={"cross_encoder": TYPE})
    loaded = load_config(cfg, types=types, environ={})
    table = loaded.providers["rr"]
    assert isinstance(table, CrossEncoderConfig) and table.batch_size == 32
    cfg.write_text('[providers.rr]\ntype = "cross_encoder"\nmodel = "x"\n')
    with pytest.raises(ConfigError, match=r"providers\.rr\.model: unknown key"):
        load_config(cfg, types=types, environ={})

    paths = Paths(tmp_path, tmp_path, tmp_path / "cache", tmp_path / "logs")
    env = ProbeEnv({}, paths, importlib.util.find_spec, from_file=True)
    relative = CrossEncoderConfig(type="cross_encoder", models={"tiny": model_dir.name})
    (tmp_path / "models").mkdir()
    assert TYPE.probe("rr", relative, env).status == "FAIL"  # not in this models dir
    (tmp_path / "models" / model_dir.name).symlink_to(model_dir)
    assert TYPE.probe("rr", relative, env).status == "OK"
    gone = ProbeEnv({}, paths, lambda _: None, from_file=True)
    assert TYPE.probe("rr", relative, gone).status == "FAIL"
