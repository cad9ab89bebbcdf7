"""Usage accounting: prices, the batched usage log, and summaries of it."""

from __future__ import annotations

from aigw.usage.prices import Price, PriceTable, default_prices
from aigw.usage.recorder import UsageRecorder, UsageRow
from aigw.usage.report import summarise

__all__ = ["Price", "PriceTable", "UsageRecorder", "UsageRow", "default_prices", "summarise"]
