"""MLX through mlx-lm: models as MLX directories (config.json, safetensors, tokenizer).

Native on Apple Silicon; `mlx[cpu]` runs it on Linux. The chat template is the tokenizer's own.
Constrained output (response_format, forced tool calls) is held to its grammar by llguidance, as
a logits processor (aigw.local.constrain).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from aigw.domain import Capability
from aigw.engine.backend import Emit, GenParams, GenResult, GenTimer, LoadedModel, ModelSpec, OutputFormat
from aigw.errors import CapabilityError
from aigw.local.constrain import Guide
from aigw.local.mlx.prefix import PrefixCache, cached_steps
from aigw.local.presets import Preset, choose, reasons
from aigw.local.presets import stops as preset_stops
from aigw.local.textstream import TextStream
from aigw.local.thinking import opens_thinking, template_kwargs
from aigw.local.tools import template_messages, template_refused

DEFAULT_CONTEXT = 4096
Steps = Callable[[int, Any, list[Any]], Iterator[int]]
"""Generation from a prompt: (max_tokens, sampler, logits processors) -> the tokens, one by one."""
CHAT_CAPS = frozenset(
    {Capability.CHAT, Capability.STREAM, Capability.JSON_MODE, Capability.JSON_SCHEMA, Capability.TOOLS}
)
EMBED_CAPS: frozenset[Capability] = frozenset()


def is_mlx_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


VisionLoader = Callable[[ModelSpec, "Preset | None"], LoadedModel]
"""Loads a vision model (a directory whose config has a vision_config): aigw.local.mlx.vision."""


class MlxBackend:
    def __init__(self, presets: Sequence[Preset] = (), vision: VisionLoader | None = None) -> None:
        self.presets = presets
        self._vision = vision

    def estimate_bytes(self, spec: ModelSpec) -> int:
        """The weights plus an fp16 KV cache for the context."""
        weights = sum(p.stat().st_size for p in spec.path.glob("*.safetensors"))
        try:
            cfg = json.loads((spec.path / "config.json").read_text())
            layers, hidden = int(cfg["num_hidden_layers"]), int(cfg["hidden_size"])
            heads = int(cfg.get("num_attention_heads", 1)) or 1
            kv_heads = int(cfg.get("num_key_value_heads", heads)) or heads
        except (OSError, ValueError, KeyError):
            return int(weights * 1.2)
        ctx = spec.context or min(int(cfg.get("max_position_embeddings", DEFAULT_CONTEXT)), DEFAULT_CONTEXT)
        return weights + 2 * layers * ctx * (hidden * kv_heads // heads) * 2

    def load(self, spec: ModelSpec) -> LoadedModel:
        if spec.embedding:
            raise CapabilityError("the mlx provider serves chat models only", param="model")
        try:
            import mlx_lm
        except ImportError:
            from aigw.extras import install_hint

            raise RuntimeError(f"mlx-lm is not installed ({install_hint('mlx')})") from None
        preset = choose(self.presets, _template(spec.path))
        if "vision_config" in json.loads((spec.path / "config.json").read_text()):
            if self._vision is None:
                raise CapabilityError(f"{spec.name} is a vision model, which this backend does not run")
            return self._vision(spec, preset)
        model, tokenizer = mlx_lm.load(str(spec.path))[:2]
        return MlxModel(spec, model, tokenizer, preset)


class MlxModel:
    def __init__(self, spec: ModelSpec, model: Any, tokenizer: Any, preset: Preset | None = None) -> None:
        self.spec = spec
        self.model = model
        self.tokenizer = tokenizer
        self.preset = preset
        cfg = json.loads((spec.path / "config.json").read_text())
        self.context = spec.context or int(cfg.get("max_position_embeddings", DEFAULT_CONTEXT))
        self.config = cfg
        override = preset.chat_template if preset is not None else None
        self.template: str = override or getattr(tokenizer, "chat_template", None) or ""
        self.knows_tools = "tool_calls" in self.template
        self._lltokenizer: Any = None
        self._prefix = PrefixCache(model)
        think = preset is not None and preset.reasoning == "think"
        probe = self._render([{"role": "user", "content": "x"}], None) if think else ""
        tools = preset.tool_format if preset is not None else None
        self._format = OutputFormat(tools, think, think and opens_thinking(probe))

    def capabilities(self) -> frozenset[Capability]:
        return CHAT_CAPS

    def _render(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, **kwargs: Any
    ) -> str:
        """The prompt's text (the model's own chat template, or its preset's)."""
        return self._render_shown(template_messages(messages, self.knows_tools), tools, **kwargs)

    def _render_shown(
        self, shown: list[dict[str, Any]], tools: list[dict[str, Any]] | None, **kwargs: Any
    ) -> str:
        override = self.preset.chat_template if self.preset is not None else None
        try:
            text: str = self.tokenizer.apply_chat_template(
                shown,
                add_generation_prompt=True,
                tokenize=False,
                **({"chat_template": override} if override else {}),
                **({"tools": tools} if tools else {}),
                **kwargs,
            )
        except Exception as e:
            raise template_refused(self.spec.name, e) from None
        return text

    def _prompt(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> list[int]:
        """The prompt's tokens."""
        text = self._render(messages, tools, **kwargs)
        tokens: list[int] = self.tokenizer.encode(text, add_special_tokens=False)
        return tokens

    def count_prompt(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        images: tuple[bytes, ...] = (),
    ) -> int:
        return len(self._prompt(messages, tools))

    def _guide(self, grammar: str | None) -> Guide | None:
        if grammar is None:
            return None
        if self._lltokenizer is None:  # built once per loaded model
            from llguidance.hf import from_tokenizer

            eos = sorted(getattr(self.tokenizer, "eos_token_ids", None) or [self.tokenizer.eos_token_id])
            hf = getattr(self.tokenizer, "_tokenizer", self.tokenizer)
            self._lltokenizer = from_tokenizer(hf, eos_token=eos)
        return Guide(self._lltokenizer, grammar, int(self._lltokenizer.vocab_size))

    def generate(self, messages: list[dict[str, Any]], params: GenParams, emit: Emit) -> GenResult:
        import mlx.core as mx
        from mlx_lm.sample_utils import make_logits_processors, make_sampler
        from mlx_lm.tokenizer_utils import NaiveStreamingDetokenizer

        timer = GenTimer()
        reasoning = template_kwargs(
            self.template, params.reasoning, params.reasoning_required, self.spec.name
        )
        size, steps, cached = self._inputs(messages, params, reasoning)
        if size >= self.context:
            raise CapabilityError(
                f"The prompt is {size} tokens; {self.spec.name}'s context is {self.context}",
                param="messages",
            )
        max_tokens = min(params.max_tokens or self.context, self.context - size)
        if params.seed is not None:
            mx.random.seed(params.seed)
        extra = params.extra
        sampler = make_sampler(
            temp=params.temperature,
            top_p=params.top_p,
            min_p=float(extra.get("min_p", 0.0)),
            top_k=int(extra.get("top_k", 0)),
        )
        processors = make_logits_processors(repetition_penalty=extra.get("repeat_penalty"))
        guide = self._guide(params.grammar)
        if guide is not None:
            processors.append(_constrained(guide))
        eos = set(getattr(self.tokenizer, "eos_token_ids", None) or [self.tokenizer.eos_token_id])
        # mlx-lm's own streaming detokenizer releases text a word at a time; this one releases
        # each token's text as soon as it is whole characters, so tokens stream as produced.
        detok: Any = cast(Any, NaiveStreamingDetokenizer)(
            getattr(self.tokenizer, "_tokenizer", self.tokenizer)
        )
        out = TextStream(preset_stops(self.preset, params.stop), emit)
        count, finish = 0, "length"
        for token in steps(max_tokens, sampler, processors):
            if token in eos:
                finish = "stop"
                break
            count += 1
            timer.token()
            detok.add_token(token)
            if out.add(detok.last_segment):
                finish = "stop"
                break
            if out.cancelled:
                break
        tail = ""
        if finish == "length" and not out.cancelled:
            detok.finalize()
            tail = detok.last_segment
        text = out.finish(tail)
        return GenResult(text, "stop" if out.stopped else finish, size, count, cached, *timer.split())

    def _inputs(
        self, messages: list[dict[str, Any]], params: GenParams, reasoning: dict[str, Any]
    ) -> tuple[int, Steps, int]:
        """The prompt's length, how to run generation from it (token by token), and how many of
        its tokens the model's cache already holds (not read again)."""
        from mlx_lm import stream_generate

        prompt = self._prompt(messages, params.tools, **reasoning)
        if params.images:
            raise CapabilityError(
                f"{self.spec.name} takes no images (it is not a vision model)", param="messages"
            )

        def run(
            feed: list[int], cache: list[Any], max_tokens: int, sampler: Any, processors: list[Any]
        ) -> Iterator[int]:
            for step in stream_generate(
                self.model,
                self.tokenizer,
                feed,
                max_tokens=max_tokens,
                sampler=sampler,
                logits_processors=processors,
                prompt_cache=cache,
            ):
                yield int(step.token)

        same, steps = cached_steps(self._prefix, prompt, run)
        return len(prompt), steps, same

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        raise CapabilityError(f"{self.spec.name} is not an embedding model", param="model")

    def output_format(self) -> OutputFormat:
        return self._format

    def describe(self) -> dict[str, Any]:
        return {
            "format": "mlx",
            "architecture": self.config.get("model_type"),
            "context": self.context,
            "quantization": self.config.get("quantization"),
            "template": f"preset {self.preset.family}"
            if self.preset and self.preset.chat_template
            else "tokenizer",
            "preset": self.preset.family if self.preset is not None else None,
        }

    def close(self) -> None:
        import mlx.core as mx

        self._prefix.forget()
        self.model = None
        mx.clear_cache()


def _constrained(guide: Guide) -> Any:
    """A logits processor holding generation to `guide`'s grammar. mlx-lm samples a step ahead of
    what it yields, so the processor itself takes each chosen token: the last of `tokens` on every
    call after the first."""
    import mlx.core as mx
    import numpy as np

    calls = 0

    def process(tokens: Any, logits: Any) -> Any:
        nonlocal calls
        if calls:
            guide.take(int(tokens[-1].item()))
        calls += 1
        allowed = guide.allowed()
        width = logits.shape[-1]
        if allowed.shape[0] < width:
            allowed = np.concatenate([allowed, np.zeros(width - allowed.shape[0], dtype=bool)])
        return mx.where(mx.array(allowed[:width]), logits, -mx.inf)

    return process


def _template(path: Path) -> str | None:
    """The chat template in a model directory's tokenizer_config.json (or its chat_template.jinja)."""
    try:
        cfg = json.loads((path / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        cfg = {}
    template = cfg.get("chat_template") if isinstance(cfg, dict) else None
    if isinstance(template, str):
        return template
    jinja = path / "chat_template.jinja"
    return jinja.read_text() if jinja.is_file() else None


def describe_dir(path: Path, presets: Sequence[Preset] = ()) -> dict[str, Any]:
    """What `aigw models show` prints, from config.json and the file sizes alone (no loading)."""
    cfg = json.loads((path / "config.json").read_text())
    quant = cfg.get("quantization")
    bits = f"{quant.get('bits')}-bit" if isinstance(quant, dict) and quant.get("bits") else "none"
    own = _template(path)
    preset = choose(presets, own)
    caps = CHAT_CAPS | ({Capability.REASONING} if reasons(preset) else set())
    if "vision_config" in cfg:
        caps |= {Capability.VISION}
    text_cfg = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
    trained = cfg.get("max_position_embeddings") or text_cfg.get("max_position_embeddings")
    return {
        "path": str(path),
        "format": "mlx",
        "size_bytes": sum(p.stat().st_size for p in path.rglob("*") if p.is_file()),
        "name": path.name,
        "architecture": cfg.get("model_type", "?"),
        "quantization": bits,
        "context": trained,
        "served_context": int(trained) if trained else DEFAULT_CONTEXT,
        "chat_template": "from the tokenizer" if own else "none in the tokenizer files",
        "preset": f"{preset.family} ({preset.source})" if preset is not None else "none",
        "tool_format": preset.tool_format if preset is not None else None,
        "capabilities": sorted(c.value for c in caps),
    }
