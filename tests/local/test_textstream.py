from __future__ import annotations

from aigw.local.textstream import TextStream


def run(pieces: list[str], stops: list[str], cancel_after: int | None = None) -> tuple[list[str], str, bool]:
    sent: list[str] = []

    def emit(s: str) -> bool:
        sent.append(s)
        return cancel_after is None or len(sent) < cancel_after

    ts = TextStream(stops, emit)
    stopped = False
    for p in pieces:
        if ts.add(p):
            stopped = True
            break
        if ts.cancelled:
            break
    return sent, ts.finish(), stopped


def test_no_stops_sends_every_piece_at_once() -> None:
    assert run(["a", "b", "c"], []) == (["a", "b", "c"], "abc", False)


def test_stop_split_across_pieces_is_never_sent() -> None:
    sent, text, stopped = run(["hel", "lo EN", "D more"], ["END"])
    assert stopped and text == "hello " and "".join(sent) == "hello "
    assert all("E" not in s for s in sent)


def test_text_that_only_looks_like_a_stop_start_is_released() -> None:
    sent, text, stopped = run(["aE", "x", "y"], ["END"])
    assert not stopped and text == "aExy" and sent[0] == "a" and "".join(sent) == "aExy"


def test_earliest_of_several_stops_wins() -> None:
    _, text, stopped = run(["one two three"], ["three", "two"])
    assert stopped and text == "one "


def test_cancel_stops_sending() -> None:
    sent, _, stopped = run(["a", "b", "c", "d"], [], cancel_after=2)
    assert sent == ["a", "b"] and not stopped


def test_empty_stop_strings_are_ignored() -> None:
    assert run(["Hel", "lo"], ["", "zz"]) == (["Hel", "lo"], "Hello", False)


def test_a_stop_completed_by_the_final_tail_is_honoured() -> None:
    sent: list[str] = []
    ts = TextStream(["END"], lambda s: sent.append(s) or True)
    assert not ts.add("ok EN")
    assert ts.finish("D more") == "ok " and ts.stopped and "".join(sent) == "ok "
