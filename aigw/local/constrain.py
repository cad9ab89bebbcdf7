"""Constrained decoding for both local engines, with llguidance: a grammar compiled from a JSON
schema (response_format, or the call a forced tool_choice must make) masks each step's logits, so
the output parses and matches the whole schema — ranges, lengths, patterns and formats included.

llguidance was chosen over xgrammar and outlines-core because one library serves both engines
(it reads llama.cpp's vocabulary and Hugging Face tokenizers alike), it implements the most of
JSON Schema and names any keyword it cannot enforce (so the request is refused instead of
answered loosely), and it computes a mask in microseconds on the CPU (see README, Performance).

Grammars are compiled without a tokenizer on the event loop (`json_grammar`), where a bad schema
becomes a 400; a `Guide` per generation runs on the model's owner thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aigw.errors import CapabilityError

if TYPE_CHECKING:  # numpy comes with the engines' extras, not the base install
    import numpy as np
    from numpy.typing import NDArray

# Compact JSON: no free whitespace, which a small model could repeat until max_tokens.
_OPTIONS: Mapping[str, Any] = MappingProxyType({"whitespace_flexible": False})


def json_grammar(schema: dict[str, Any], param: str) -> str:
    """The grammar for JSON matching `schema` ({}: any JSON object); a CapabilityError naming what
    cannot be enforced (an unknown keyword or format, say)."""
    try:
        from llguidance import LLMatcher
    except ImportError:
        from aigw.extras import install_hint

        raise CapabilityError(
            f"constrained decoding needs llguidance ({install_hint('local')})", param=param
        ) from None
    target = schema or {"type": "object"}
    try:
        grammar: str = LLMatcher.grammar_from_json_schema(target, defaults=dict(_OPTIONS))  # type: ignore[arg-type]
    except ValueError as e:
        raise CapabilityError(f"Local models cannot enforce this JSON schema: {e}", param=param) from None
    error = LLMatcher.validate_grammar(grammar)
    if error:
        raise CapabilityError(f"Local models cannot enforce this JSON schema: {error}", param=param)
    return grammar


class Guide:
    """One generation held to a grammar: the tokens it may take next, and the ones it took."""

    def __init__(self, tokenizer: Any, grammar: str, n_vocab: int) -> None:
        from llguidance import LLMatcher
        from llguidance.numpy import allocate_token_bitmask

        self._matcher = LLMatcher(tokenizer, grammar)
        self._bits = allocate_token_bitmask(1, n_vocab)
        self._n_vocab = n_vocab

    def allowed(self) -> NDArray[np.bool_]:
        """A boolean per token: may it come next."""
        import numpy as np
        from llguidance.numpy import fill_next_token_bitmask

        fill_next_token_bitmask(self._matcher, self._bits)
        bits = np.unpackbits(self._bits[0].view(np.uint8), bitorder="little")
        return bits[: self._n_vocab].astype(bool)

    def mask(self, scores: NDArray[np.float32]) -> NDArray[np.float32]:
        """`scores` (one step's logits) with every token the grammar forbids at -inf, in place."""
        allowed = self.allowed()
        scores[: allowed.shape[0]][~allowed] = -float("inf")
        scores[allowed.shape[0] :] = -float("inf")
        return scores

    def take(self, token: int) -> None:
        """The token the model chose (always an allowed one)."""
        self._matcher.consume_token(token)

    @property
    def done(self) -> bool:
        """The grammar is complete: nothing may follow."""
        return bool(self._matcher.is_stopped())
