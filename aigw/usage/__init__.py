"""Usage accounting: prices, the batched usage log, metrics, and summaries of it."""

from __future__ import annotations

from aigw.usage.prices import PriceTable
from aigw.usage.recorder import UsageRecorder, UsageRow
from aigw.usage.report import summarise

__all__ = ["PriceTable", "UsageRecorder", "UsageRow", "summarise"]
