"""Vision models on MLX through mlx-vlm: a model directory whose config has a `vision_config`.

The prompt is the model's own chat template over messages whose images are `{"type": "image"}`
parts, in place; the model's processor turns it and the images into the model's inputs, and
mlx-vlm's generation step runs it, with aigw's sampler and logits processors (so constrained
decoding holds here too). Text-only requests run the same way, without pixels.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from aigw.domain import Capability, Reasoning
from aigw.engine.backend import GenParams, LoadedModel, ModelSpec
from aigw.errors import InvalidRequest
from aigw.local.mlx.backend import CHAT_CAPS, MlxModel, Steps
from aigw.local.presets import Preset
from aigw.local.thinking import template_kwargs
from aigw.local.tools import template_messages


def load_vision(spec: ModelSpec, preset: Preset | None) -> LoadedModel:
    """A vision model directory, through mlx-vlm (the `vision` extra)."""
    try:
        from mlx_vlm.utils import load as load_vlm
    except ImportError:
        from aigw.extras import install_hint

        raise RuntimeError(
            f"{spec.name} is a vision model: mlx-vlm is not installed ({install_hint('vision')})"
        ) from None
    model, processor = load_vlm(str(spec.path))[:2]
    return VisionModel(spec, model, processor, preset)


def _parts(content: Any) -> Any:
    """A message's content as a vision template takes it: images as `{"type": "image"}` parts."""
    if not isinstance(content, list):
        return content
    out: list[dict[str, Any]] = []
    for p in content:
        kind = p.get("type") if isinstance(p, dict) else None
        if kind in ("text", "input_text"):
            out.append({"type": "text", "text": str(p.get("text", ""))})
        elif kind in ("image_url", "input_image"):
            out.append({"type": "image"})
    return out


class VisionModel(MlxModel):
    def __init__(self, spec: ModelSpec, model: Any, processor: Any, preset: Preset | None = None) -> None:
        from mlx_lm.tokenizer_utils import TokenizerWrapper

        self.processor = processor
        super().__init__(spec, model, TokenizerWrapper(processor.tokenizer), preset)

    def capabilities(self) -> frozenset[Capability]:
        return CHAT_CAPS | {Capability.VISION}

    def _vision_prompt(self, messages: list[dict[str, Any]], params: GenParams, **kwargs: Any) -> str:
        shown = template_messages(messages, self.knows_tools)
        for msg, original in zip(shown, messages, strict=True):
            if isinstance(original.get("content"), list):
                msg["content"] = _parts(original["content"])
        return self._render_shown(shown, params.tools, **kwargs)

    def _features(self, text: str, images: tuple[bytes, ...]) -> dict[str, Any]:
        from PIL import Image, UnidentifiedImageError

        try:
            pictures = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]
        except (UnidentifiedImageError, OSError):
            raise InvalidRequest("an image could not be decoded", param="messages") from None
        got: dict[str, Any] = dict(
            self.processor(text=[text], images=pictures or None, return_tensors="np")
        )
        return got

    def count_prompt(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        images: tuple[bytes, ...] = (),
        reasoning: Reasoning | None = None,
    ) -> int:
        params = GenParams(None, 1.0, 1.0, (), None, tools=tools, images=images)
        kwargs = template_kwargs(self.template, reasoning, False, self.spec.name)
        features = self._features(self._vision_prompt(messages, params, **kwargs), images)
        return int(features["input_ids"].shape[1])

    def _inputs(
        self, messages: list[dict[str, Any]], params: GenParams, reasoning: dict[str, Any]
    ) -> tuple[int, Steps, int]:
        import mlx.core as mx
        from mlx_vlm.generate import generate_step

        features = self._features(self._vision_prompt(messages, params, **reasoning), params.images)
        ids = mx.array(features.pop("input_ids"))
        mask = mx.array(features.pop("attention_mask")) if "attention_mask" in features else None
        pixels = features.pop("pixel_values", None)
        extra = {k: mx.array(v) for k, v in features.items()}

        step: Any = generate_step  # mlx-vlm's own annotations do not cover the model's extra inputs

        def steps(max_tokens: int, sampler: Any, processors: list[Any]) -> Iterator[int]:
            for token, _ in step(
                ids,
                self.model,
                None if pixels is None else mx.array(pixels),
                mask,
                max_tokens=max_tokens,
                sampler=sampler,
                logits_processors=processors,
                **extra,
            ):
                yield int(token)

        return int(ids.shape[1]), steps, 0
