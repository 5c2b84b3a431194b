"""Shared-address counts: distinct accounts with successful logins per address and prefix."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detector.enrich.shared import (
    SHARED_SCHEMA,
    add_shared_columns,
    collect_pairs,
    merge_shared,
    shared_address_counts,
    success_pairs,
)
from detector.errors import SchemaError
from detector.schema import C

T = [datetime(2026, 3, 1, h, tzinfo=UTC) for h in range(6)]

# Two accounts (one written twice, differently cased) succeed from 203.0.113.5, one from
# 203.0.113.9; a failure and an unknown user do not count; the IPv6 /64 holds two addresses.
SIX = pl.DataFrame(
    {
        C.TIMESTAMP: T,
        C.ACTION: ["login", "login", "login", "login", "login", "logout"],
        C.OUTCOME: ["success", "success", "success", "failure", "success", None],
        C.ACCOUNT: ["alice@x", "ALICE@x", "bob@x", "carol@x", "dan@x", "erin@x"],
        C.SOURCE_IP: [
            "203.0.113.5",
            "203.0.113.5",
            "203.0.113.9",
            "203.0.113.5",
            "2001:db8::1",
            "2001:db8::2",
        ],
    }
)


def as_dict(counts: pl.DataFrame) -> dict[tuple[str, str], int]:
    return {(s, k): n for s, k, n, _ in counts.iter_rows()}


def test_counts_on_six_rows() -> None:
    counts = shared_address_counts(SIX.lazy())
    assert counts.schema == SHARED_SCHEMA
    assert as_dict(counts) == {
        ("ip", "203.0.113.5"): 1,
        ("ip", "203.0.113.9"): 1,
        ("ip", "2001:db8::1"): 1,
        ("prefix", "203.0.113.0/24"): 2,
        ("prefix", "2001:db8::/64"): 1,
    }
    last = counts.filter(pl.col("key") == "203.0.113.0/24")["last_seen"][0]
    assert last == T[2]


def test_eager_and_lazy_agree() -> None:
    assert shared_address_counts(SIX).equals(shared_address_counts(SIX.lazy()))


def test_empty_events() -> None:
    assert shared_address_counts(SIX.clear()).height == 0


def history(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    return pl.DataFrame([(s, k, n, T[0]) for s, k, n in rows], schema=SHARED_SCHEMA, orient="row")


def test_merge_takes_maximum_not_sum() -> None:
    tonight = shared_address_counts(SIX)
    old = history([("ip", "203.0.113.5", 40), ("prefix", "203.0.113.0/24", 1), ("ip", "192.0.2.1", 7)])
    merged = as_dict(merge_shared(tonight, old))
    assert merged[("ip", "203.0.113.5")] == 40
    assert merged[("prefix", "203.0.113.0/24")] == 2
    assert merged[("ip", "192.0.2.1")] == 7


def test_merge_rejects_wrong_shape() -> None:
    with pytest.raises(SchemaError, match="legit_accounts"):
        merge_shared(pl.DataFrame({"scope": ["ip"], "key": ["x"], "accounts": [1]}))


def test_merge_nothing() -> None:
    assert merge_shared(None).schema == SHARED_SCHEMA


def test_add_columns() -> None:
    counts = shared_address_counts(SIX)
    events = pl.LazyFrame(
        {
            C.SOURCE_IP: ["203.0.113.5", "203.0.113.77", "198.51.100.1", None],
            C.PREFIX: ["203.0.113.0/24", "203.0.113.0/24", "198.51.100.0/24", None],
        }
    )
    out = add_shared_columns(events, counts).collect()
    assert out[C.IP_LEGIT_ACCOUNTS].to_list() == [1, 0, 0, None]
    assert out[C.PREFIX_LEGIT_ACCOUNTS].to_list() == [2, 2, 0, None]
    assert out[C.IP_LEGIT_ACCOUNTS].dtype == pl.Int32


def test_shards_merged_equal_whole() -> None:
    """Counts of two shards merged by maximum never exceed the whole; the whole is exact."""
    whole = as_dict(shared_address_counts(SIX))
    merged = as_dict(merge_shared(shared_address_counts(SIX.head(2)), shared_address_counts(SIX.tail(4))))
    assert all(merged[k] <= whole[k] for k in merged)


@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 5),
            st.sampled_from(["success", "failure"]),
            st.sampled_from([None, "a@x", "A@x", "b@x", "c"]),
            st.sampled_from([None, "203.0.113.5", "203.0.113.9", "2001:db8::1", "198.51.100.7"]),
        ),
        max_size=30,
    ),
    part_events=st.integers(1, 12),
)
def test_pairs_in_address_parts_are_the_pairs_of_one_pass(
    rows: list[tuple[int, str, str | None, str | None]], part_events: int
) -> None:
    events = pl.DataFrame(
        {
            C.TIMESTAMP: [T[r[0]] for r in rows],
            C.ACTION: ["login"] * len(rows),
            C.OUTCOME: [r[1] for r in rows],
            C.ACCOUNT: [r[2] for r in rows],
            C.SOURCE_IP: [r[3] for r in rows],
        },
        schema={
            C.TIMESTAMP: pl.Datetime("us", "UTC"),
            C.ACTION: pl.String,
            C.OUTCOME: pl.String,
            C.ACCOUNT: pl.String,
            C.SOURCE_IP: pl.String,
        },
    ).lazy()
    whole = success_pairs(events).collect().sort(pl.all())
    parts = collect_pairs(events, len(rows), part_events)
    assert parts.sort(pl.all()).equals(whole)
