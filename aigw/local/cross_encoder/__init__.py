"""The `cross_encoder` provider type: local rerankers, sentence-transformers' `CrossEncoder` on this
machine's CPU (or GPU), for /v1/rerank and RAG's re-ranking.

    [providers.rerank]
    type = "cross_encoder"
    models = { "my-reranker" = "ms-marco-MiniLM-L6-v2" }   # a model directory; relative: in the models dir

It needs the `rag` extra (sentence-transformers). The environment never sets one up: a reranker
is served only where the config names it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigw.local.cross_encoder.config import CrossEncoderConfig, is_model_dir, model_dirs
from aigw.providers.spec import ProbeEnv, ProviderContext, ProviderType, Verdict

if TYPE_CHECKING:
    from aigw.local.cross_encoder.provider import CrossEncoderProvider

MODULE = "sentence_transformers"
__all__ = ["TYPE", "CrossEncoderConfig", "CrossEncoderType"]


class CrossEncoderType(ProviderType[CrossEncoderConfig]):
    name = "cross_encoder"
    config_model = CrossEncoderConfig
    is_local = True

    def create(self, name: str, config: CrossEncoderConfig, ctx: ProviderContext) -> CrossEncoderProvider:
        from aigw.local.cross_encoder.provider import CrossEncoderProvider

        return CrossEncoderProvider(name, model_dirs(config, ctx.paths.models_dir), config.batch_size)

    def probe(self, name: str, config: CrossEncoderConfig, env: ProbeEnv) -> Verdict:
        """sentence-transformers is installed, and every model the table names is a directory
        with a config.json."""
        if env.find_spec(MODULE) is None:
            from aigw.extras import install_hint

            return Verdict("FAIL", f"{self.name}: {MODULE} is not installed", install_hint("rag"))
        dirs = model_dirs(config, env.paths.models_dir)
        missing = [f"{model} ({path})" for model, path in dirs.items() if not is_model_dir(path)]
        if missing:
            return Verdict(
                "FAIL",
                f"{self.name}: no model directory (with a config.json) at {', '.join(missing[:3])}",
                f"correct the path under [providers.{name}] models",
            )
        if not dirs:
            fix = f"name one under [providers.{name}] models"
            return Verdict("WARN", f"{self.name}: no models configured", fix)
        return Verdict("OK", f"{self.name}: {len(dirs)} reranker(s) configured, directories present")


TYPE = CrossEncoderType()
