"""Field cuts (``detector.ingest.fields``): literal splits, byte-exact on non-ASCII text."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.ingest.fields import after, angle, before, between, byte_find, byte_head, byte_slice, to_int

T = pl.col("t")


def cut(expr: pl.Expr, values: list[str | None]) -> list:
    return pl.DataFrame({"t": values}, schema={"t": pl.String}).select(expr).to_series().to_list()


@pytest.mark.parametrize(
    ("text", "start", "end", "want"),
    [
        ("a rip=1.2.3.4, lip=5", "rip=", ",", "1.2.3.4"),
        ("a rip=1.2.3.4", "rip=", ",", "1.2.3.4"),
        ("no marker", "rip=", ",", None),
        ("é rip=ü, x", "rip=", ",", "ü"),
        ("x=1 x=2,", "x=", ",", "1 x=2"),
        ("s (a): b): c", "(", "): ", "a"),
        ("<abc>", "", ">", "<abc"),
        (None, "a", ",", None),
    ],
)
def test_between(text, start, end, want):
    assert cut(between(T, start, end), [text]) == [want]


@pytest.mark.parametrize(
    ("text", "want_after", "want_before"),
    [("k: v: w", "v: w", "k"), ("kv", None, "kv"), ("ä: ö", "ö", "ä"), ("", None, "")],
)
def test_after_and_before(text, want_after, want_before):
    assert cut(after(T, ": "), [text]) == [want_after]
    assert cut(before(T, ": "), [text]) == [want_before]


@pytest.mark.parametrize(
    ("text", "want"),
    [("user=<a@x>, y", "a@x"), ("user=<>, y", None), ("user=<a", None), ("x", None), ("é user=<ü>", "ü")],
)
def test_angle(text, want):
    assert cut(angle(T, "user"), [text]) == [want]


@pytest.mark.parametrize(
    ("text", "want"),
    [("12 attempts", 12), ("  7/9", 7), ("x1", None), ("", None), ("99999999999999999999", None)],
)
def test_to_int(text, want):
    assert cut(to_int(T), [text]) == [want]


def test_byte_cuts_follow_byte_find():
    text = "héllo: wörld"
    pos = cut(byte_find(T, ": "), [text])[0]
    assert pos == len("héllo".encode())
    assert cut(byte_head(T, pos), [text]) == ["héllo"]
    assert cut(byte_slice(T, pos + 2), [text]) == ["wörld"]


MARKERS = [": ", " ", "[", ">", ": SASL "]


@settings(max_examples=60, deadline=None)
@given(
    head=st.text(alphabet=st.sampled_from([*"ab:[ ", *"éü€漢𝔘"]), max_size=10),
    tail=st.text(alphabet=st.sampled_from([*"ab:[> ", *"éü€漢𝔘"]), max_size=10),
    marker=st.sampled_from(MARKERS),
)
def test_byte_find_and_the_cuts_count_the_same_unit(head, tail, marker):
    """Whatever precedes the first marker, cutting at its offset gives exactly the text around it."""
    head = head.split(marker)[0] if marker in head else head
    text = head + marker + tail
    pos = cut(byte_find(T, marker), [text])[0]
    assert pos == len(head.encode())
    assert cut(byte_head(T, pos), [text]) == [head]
    assert cut(byte_slice(T, pos + len(marker)), [text]) == [tail]


def test_byte_find_missing_marker_is_null():
    assert cut(byte_find(T, ": "), ["é", None, ""]) == [None, None, None]
