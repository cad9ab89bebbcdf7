"""Legacy completions' prompts beyond plain text: token ids checked against the vocabulary, and
fill-in-the-middle prompts from a model's own FIM tokens.

A code model trained for infilling has three special tokens: one before the prefix, one before
the suffix, one where the middle starts. The prompt is built as llama.cpp's server builds it
(prefix-suffix-middle order):

    [BOS] <fim_pre> prefix <fim_suf> suffix <fim_mid>

and the model writes the middle. GGUF files name the tokens in their metadata
(`tokenizer.ggml.fim_pre_token_id`, ...; llama.cpp also recognises them by their text); MLX models
by their tokenizer's vocabulary, matched against the spellings the families use.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from aigw.errors import CapabilityError, InvalidRequest, quoted

SPELLINGS: tuple[tuple[str, str, str], ...] = (
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),  # Qwen2.5-Coder, Qwen3-Coder
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),  # StarCoder, StarCoder2, Granite
    ("<fim-prefix>", "<fim-suffix>", "<fim-middle>"),  # Refact
    # DeepSeek-Coder (fullwidth bars, the SentencePiece space)
    ("<\uff5cfim\u2581begin\uff5c>", "<\uff5cfim\u2581hole\uff5c>", "<\uff5cfim\u2581end\uff5c>"),
    ("<PRE>", "<SUF>", "<MID>"),  # Code Llama
    ("▁<PRE>", "▁<SUF>", "▁<MID>"),  # Code Llama (SentencePiece spelling)
    ("<|code_prefix|>", "<|code_suffix|>", "<|code_middle|>"),  # GLM-4
)
"""The FIM tokens' texts by family, as llama.cpp recognises them (src/llama-vocab.cpp)."""
GGUF_KEYS = tuple(f"tokenizer.ggml.fim_{part}_token_id" for part in ("pre", "suf", "mid"))


@dataclass(frozen=True, slots=True)
class FimTokens:
    pre: int
    suf: int
    mid: int

    def prompt(self, prefix: list[int], suffix: list[int], bos: int | None = None) -> list[int]:
        """The infill prompt around already tokenized prefix and suffix text."""
        head = [bos] if bos is not None else []
        return [*head, self.pre, *prefix, self.suf, *suffix, self.mid]


def from_ids(pre: int, suf: int, mid: int) -> FimTokens | None:
    """The FIM tokens a library reported (-1 or None: it has none)."""
    if min(pre, suf, mid) < 0:
        return None
    return FimTokens(pre, suf, mid)


def from_vocabulary(lookup: Callable[[str], int | None]) -> FimTokens | None:
    """The FIM tokens of a vocabulary, found by their texts (`lookup`: a token's id, or None)."""
    for spelling in SPELLINGS:
        ids = [lookup(text) for text in spelling]
        if all(i is not None for i in ids):
            pre, suf, mid = (int(i) for i in ids if i is not None)
            return FimTokens(pre, suf, mid)
    return None


def gguf_has_fim(meta: Mapping[str, Any], tokens: Collection[str] = ()) -> bool:
    """Whether a GGUF model can fill in the middle: its metadata names the tokens, or its
    vocabulary (`tokens`, when read) holds one family's three."""
    if all(isinstance(meta.get(k), int) and meta[k] >= 0 for k in GGUF_KEYS):
        return True
    return spelled(tokens)


def spelled(tokens: Collection[str]) -> bool:
    """Whether a vocabulary holds one family's three FIM tokens."""
    return any(all(t in tokens for t in spelling) for spelling in SPELLINGS)


def vocabulary_ids(tokens: tuple[int, ...], size: int, model: str) -> list[int]:
    """A prompt given as token ids, each checked to be in the model's vocabulary of `size`."""
    bad = next((t for t in tokens if not 0 <= t < size), None)
    if bad is not None:
        raise InvalidRequest(f"Token {bad} is not in {model}'s vocabulary (0 to {size - 1})", param="prompt")
    return list(tokens)


def no_fim(model: str) -> CapabilityError:
    return CapabilityError(
        f"Model {quoted(model)} has no fill-in-the-middle tokens: 'suffix' needs a code model trained "
        "for infilling (drop 'suffix' for a plain completion)",
        param="suffix",
    )
