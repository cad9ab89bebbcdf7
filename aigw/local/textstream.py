"""Generated text with stop sequences, shared by the local backends. Pure."""

from __future__ import annotations

from aigw.engine.backend import Emit


class TextStream:
    """Incremental text with stop sequences: emits at once all text that cannot begin a stop."""

    def __init__(self, stops: list[str], emit: Emit) -> None:
        self._stops = [s for s in stops if s]  # an empty stop would end every generation at once
        self._longest = max((len(s) for s in self._stops), default=0)
        self._emit = emit
        self.text = ""
        self._sent = 0
        self.cancelled = False
        self.stopped = False  # a stop sequence was reached

    def _send(self, upto: int) -> None:
        if upto > self._sent and not self.cancelled:
            piece, self._sent = self.text[self._sent : upto], upto
            self.cancelled = not self._emit(piece)

    def add(self, piece: str) -> bool:
        """Add a token's text; True when a stop sequence was reached (the text ends before it)."""
        self.text += piece
        start = max(0, self._sent - self._longest)
        hits = [i for i in (self.text.find(s, start) for s in self._stops) if i >= 0]
        if hits:
            self.stopped = True
            self.text = self.text[: min(hits)]
            self._send(len(self.text))
            return True
        self._send(len(self.text) - self._partial_stop())
        return False

    def _partial_stop(self) -> int:
        """Length of the text's longest tail that begins a stop sequence: held back, not sent."""
        held = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(self.text)), held, -1):
                if self.text.endswith(stop[:k]):
                    held = k
                    break
        return held

    def finish(self, tail: str = "") -> str:
        """The whole text, after sending what was held back (plus any last undecoded `tail`)."""
        if tail and self.add(tail):
            return self.text
        self._send(len(self.text))
        return self.text


def partial_tag(text: str, tag: str) -> int:
    """Length of the longest tail of `text` that begins `tag` (text to hold back while streaming)."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0
