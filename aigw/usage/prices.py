"""What a request cost: USD per million tokens by model: the provider types' published prices,
overridden by config.

A price is looked up, first match wins, as
  1. "provider/model"                  (config may price one provider's model on its own)
  2. the bare model name
  3. the model without a date or version suffix (gpt-4o-2024-08-06 -> gpt-4o)
  4. steps 2-3 for the last "/" segment of a model that names a vendor (openai/gpt-4o)
Providers of a local type cost nothing unless config prices "provider/model".
Unknown models cost 0; `known()` tells them apart from free ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from aigw.domain import Price

if TYPE_CHECKING:
    from aigw.config import Config

_PER_TOKENS = 1_000_000
# A trailing date (-2024-08-06, -20241022, @20241022), a 3-digit version (-001) or -latest.
_VERSION_SUFFIX = re.compile(r"(?:-\d{4}-\d{2}-\d{2}|[-@]\d{8}|-\d{3}|-latest)$")


class _PriceLike(Protocol):
    @property
    def input(self) -> float: ...
    @property
    def output(self) -> float: ...


def strip_version(model: str) -> str:
    """gpt-4o-mini-2024-07-18 -> gpt-4o-mini; names without a suffix come back unchanged."""
    return _VERSION_SUFFIX.sub("", model)


_MEMO_SIZE = 1024


class PriceTable:
    def __init__(
        self,
        prices: Mapping[str, _PriceLike] | None = None,
        *,
        overrides: Mapping[str, _PriceLike] | None = None,
        local_providers: frozenset[str] = frozenset(),
    ) -> None:
        base = prices or {}
        merged = {k.lower(): Price(float(p.input), float(p.output)) for k, p in base.items()}
        for k, p in (overrides or {}).items():
            merged[k.lower()] = Price(float(p.input), float(p.output))
        self._prices: Mapping[str, Price] = MappingProxyType(merged)
        self._local = local_providers
        self._memo: dict[tuple[str | None, str], Price | None] = {}

    @classmethod
    def from_config(
        cls, config: Config, published: Mapping[str, _PriceLike], local: frozenset[str]
    ) -> PriceTable:
        """The provider types' published prices with `[prices]` from config on top; the providers
        named in `local` (of a local type) are free unless config prices them."""
        return cls(published, overrides=config.prices, local_providers=local)

    @property
    def prices(self) -> Mapping[str, Price]:
        return self._prices

    def price(self, provider: str | None, model: str) -> Price | None:
        """The price that applies, or None for a local provider or an unknown model (memoized:
        this runs once per request)."""
        key = (provider, model)
        try:
            return self._memo[key]
        except KeyError:
            pass
        if len(self._memo) >= _MEMO_SIZE:  # clients may name any provider/model
            self._memo.clear()
        found = self._memo[key] = self._lookup(provider, model)
        return found

    def _lookup(self, provider: str | None, model: str) -> Price | None:
        if provider:
            exact = self._prices.get(f"{provider}/{model}".lower())
            if exact is not None:
                return exact
            if provider in self._local:
                return None
        for name in self._candidates(model.lower()):
            found = self._prices.get(name)
            if found is not None:
                return found
        return None

    def known(self, provider: str | None, model: str) -> bool:
        """Whether the cost of this model is known (a local provider's is: zero)."""
        return (provider is not None and provider in self._local) or self.price(provider, model) is not None

    def cost(self, provider: str | None, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for one request; 0 for local providers and unknown models."""
        p = self.price(provider, model)
        if p is None:
            return 0.0
        return (max(prompt_tokens, 0) * p.input + max(completion_tokens, 0) * p.output) / _PER_TOKENS

    @staticmethod
    def _candidates(model: str) -> Iterator[str]:
        yield model
        yield strip_version(model)
        if "/" in model:
            last = model.rsplit("/", 1)[1]
            yield last
            yield strip_version(last)
