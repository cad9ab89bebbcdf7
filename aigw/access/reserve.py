"""The most a request may use, decided at admission: its worst case is reserved against the
caller's token limit and budget, and its answer is capped to fit.

A request's worst case is its prompt (estimated, about 4 characters a token) plus its answer: the
`max_tokens` it asks for, or `[limits] default_max_tokens` when it asks for none. Only requests
under a token limit (tpm) or a budget are bounded; the rest are left exactly as sent.

- Token limit: the answer is capped so that prompt + answer fit what the bucket holds now; when
  not even `MIN_ANSWER` tokens fit, the limiter answers 429 with the wait until they do.
- Budget: the answer is capped to what the key's remaining budget (after its requests in flight)
  pays for at the dearest of the route's targets; a prompt that alone costs more is refused.
- A cap below `MIN_ANSWER` tokens (or the requested max_tokens, when smaller) refuses instead.
- A budgeted key may use only models with a known price: an unpriced model is refused (403)
  rather than counted as free.

When the answer is capped, the request goes upstream with that `max_tokens`: overshoot of a
limit or budget is bounded by the estimate's error, not by what an upstream chooses to send.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aigw.access.keys import ApiKey
from aigw.domain import Route
from aigw.errors import PermissionDenied, RateLimited, quoted
from aigw.usage.prices import PriceTable

MIN_ANSWER = 16
"""The fewest answer tokens a capped request may be given; below it, a 429 instead."""
_UNBOUNDED = 1 << 31


@dataclass(frozen=True, slots=True)
class Reservation:
    tokens: int
    """Tokens to take from the token bucket: the prompt estimate plus the answer's bound."""
    cap: int | None
    """The max_tokens the request must go upstream with (None: as sent)."""
    held_usd: float
    """Budget held while the request runs: its worst case at the dearest target."""


def asked_max_tokens(body: dict[str, Any]) -> int | None:
    v = body.get("max_completion_tokens")
    if v is None:
        v = body.get("max_tokens")
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def with_max_tokens(body: dict[str, Any], cap: int) -> dict[str, Any]:
    """`body` with its answer capped at `cap` tokens, in the field the client used (max_tokens
    when it used none)."""
    field = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    return {**body, field: cap}


def _budget_short(key: ApiKey, left: float, what: str) -> RateLimited:
    return RateLimited(
        f"API key {key.name!r} has ${max(left, 0):.4f} of its budget left: not enough for {what} "
        "(see `aigw usage --by key`)",
        retry_after=None,
        code="budget_exhausted",
    )


def estimate_tokens(body: dict[str, Any]) -> int:
    """A cheap upper-side estimate of the prompt's tokens (about 4 characters each), for the TPM
    bucket before the call; the real count replaces it afterwards."""
    chars = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            chars += len(content) if isinstance(content, str) else len(str(content or ""))
            chars += 16  # role and framing
    for name in ("input", "prompt", "suffix"):  # embeddings; a legacy completion's text or token ids
        inp = body.get(name)
        if isinstance(inp, str):
            chars += len(inp)
        elif isinstance(inp, list):
            chars += sum(
                len(x) if isinstance(x, str) else 4 * (len(x) if isinstance(x, list) else 1) for x in inp
            )
    chars += _rerank_chars(body)
    return max(1, chars // 4)


def _rerank_chars(body: dict[str, Any]) -> int:
    """A rerank's reading: the query once per document (a cross-encoder reads each pair), and
    every document."""
    documents = body.get("documents")
    if not isinstance(documents, list):
        return 0
    query = body.get("query")
    chars = len(query) * len(documents) if isinstance(query, str) else 0
    for d in documents:
        text = d.get("text") if isinstance(d, dict) else d
        chars += len(text) if isinstance(text, str) else 0
    return chars


class Reserver:
    def __init__(self, prices: PriceTable, default_max_tokens: int) -> None:
        self._prices = prices
        self._default = default_max_tokens

    def reserve(
        self,
        key: ApiKey | None,
        route: Route,
        body: dict[str, Any],
        prompt: int,
        *,
        tpm: int,
        tpm_room: int,
        budget_left: float | None,
        generates: bool,
    ) -> Reservation:
        """The reservation for a request with `prompt` estimated tokens. `tpm_room`: the tokens
        its bucket holds now; `budget_left`: what the key's budget still allows after its
        requests in flight (None: no budget)."""
        if budget_left is not None:
            assert key is not None
            self._check_priced(key, route)
        if not generates or (not tpm and budget_left is None):
            held = 0.0 if budget_left is None else self._cost(route, prompt, 0)
            if budget_left is not None and held > budget_left:
                assert key is not None
                raise _budget_short(key, budget_left, "this input")
            return Reservation(prompt, None, held)
        asked = asked_max_tokens(body)
        answer = asked if asked is not None else self._default
        least = min(answer, MIN_ANSWER)
        if tpm:
            if tpm - prompt < least:
                raise RateLimited(
                    f"The prompt (about {prompt} tokens) leaves no room for an answer within the "
                    f"limit of {tpm} tokens per minute; send less",
                    retry_after=None,
                )
            # What the bucket holds now; when not even `least` fits, the limiter says how long
            # until it does.
            answer = max(min(answer, tpm_room - prompt), least)
        if budget_left is not None:
            assert key is not None
            answer = min(answer, self._answer_budget(key, route, prompt, budget_left))
            if answer < least:
                raise _budget_short(key, budget_left, f"this prompt and an answer of {least} tokens")
        cap = answer if asked is None or answer < asked else None
        held = 0.0 if budget_left is None else self._cost(route, prompt, answer)
        return Reservation(prompt + answer, cap, held)

    def _check_priced(self, key: ApiKey, route: Route) -> None:
        for t in route.targets:
            if not self._prices.known(t.provider, t.model):
                raise PermissionDenied(
                    f"Model {quoted(f'{t.provider}/{t.model}')} has no known price, and API key "
                    f"{key.name!r} has a budget: add its price under [prices] in config.toml to use it",
                    param="model",
                )

    def _cost(self, route: Route, prompt: int, answer: int) -> float:
        return max(self._prices.cost(t.provider, t.model, prompt, answer) for t in route.targets)

    def _answer_budget(self, key: ApiKey, route: Route, prompt: int, left: float) -> int:
        """The most answer tokens `left` dollars pay for after the prompt, at the dearest target."""
        after_prompt = left - self._cost(route, prompt, 0)
        if after_prompt <= 0:
            return 0
        per_token = max(self._prices.cost(t.provider, t.model, 0, 1) for t in route.targets)
        return math.floor(after_prompt / per_token) if per_token > 0 else _UNBOUNDED
