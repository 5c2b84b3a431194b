"""The steps after scoring run per account shard and give what the whole night gives: the replay
(per source bucket, counts summed) and the plan's tables."""

from __future__ import annotations

import importlib
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.config import Config
from detector.recommend import replay
from detector.recommend.logins import LoginContext, PlanLogins, combine, logins_step, logins_task
from detector.recommend.replay import replay_shards
from detector.schema import RECOMMENDATION_SCHEMA, C
from tests.recommend_frames import NOW, ev, events

IPS = ["203.0.113.5", "203.0.113.6", "198.51.100.9", "10.0.0.4", "2001:db8::7", None]
ACCOUNTS = ["alice", "Alice", "bob", "doc", "u1", "u2", None]


def _plan(blocks: list[str], locks: list[str], resets: list[str], restricts: list[str]) -> pl.DataFrame:
    base = {
        "measure_id": "M1", "target_type": "ip", "services": [], "allowed_networks": None, "wave": None,
        "expires_at": NOW + timedelta(days=1), C.RISK_SCORE: 0.9, "confidence": 0.9, "reason": "r",
        C.TECHNIQUES: [], "evidence": "{}", "collateral_accounts": 0, "collateral_practitioners": 0,
    }  # fmt: skip
    rows = [{**base, "action": "block", "target": t} for t in blocks]
    rows += [{**base, "action": "lock_account", "target_type": "account", "target": t} for t in locks]
    rows += [{**base, "action": "reset_credentials", "target_type": "account", "target": t} for t in resets]
    rows += [
        {**base, "action": "restrict_account", "target_type": "account", "target": t, "allowed_networks": []}
        for t in restricts
    ]
    return pl.DataFrame(rows, schema=RECOMMENDATION_SCHEMA)


def _night(rows: list[tuple[int, int, str, float, bool, float]]) -> pl.DataFrame:
    """Scored events in event order (``event_id`` numbers them by time)."""
    frame = events(
        [
            ev(IPS[i] or "192.0.2.1", ACCOUNTS[a] or "x", outcome, minute=minute, practitioner=doc, risk=risk)
            for i, a, outcome, minute, doc, risk in rows
        ]
    ).drop("is_attack")
    frame = frame.with_columns(
        pl.Series(C.SOURCE_IP, [IPS[r[0]] for r in rows], dtype=pl.String),
        pl.Series(C.ACCOUNT, [ACCOUNTS[r[1]] for r in rows], dtype=pl.String),
    )
    return (
        frame.sort(C.TIMESTAMP, maintain_order=True)
        .with_row_index(C.EVENT_ID)
        .with_columns(pl.col(C.EVENT_ID).cast(pl.UInt64))
    )


def _shards(frame: pl.DataFrame, n: int, root: Path) -> list[Path]:
    """The night split into ``n`` account shards (as :func:`detector.detect.shards.shard_of`)."""
    from detector.detect.shards import SHARD, shard_of

    root.mkdir(parents=True, exist_ok=True)
    split = frame.with_columns(shard_of(n))
    paths = []
    for k in range(n):
        path = root / f"scored-{k}.parquet"
        split.filter(pl.col(SHARD) == k).drop(SHARD).write_parquet(path)
        paths.append(path)
    return paths


row = st.tuples(
    st.integers(0, len(IPS) - 1),
    st.integers(0, len(ACCOUNTS) - 1),
    st.sampled_from(["failure", "success", "failure"]),
    st.floats(0, 30, allow_nan=False),  # dense enough for fail2ban bans
    st.booleans(),
    st.floats(0, 1, allow_nan=False),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(row, min_size=0, max_size=60),
    shards=st.integers(1, 4),
    bucket_logins=st.sampled_from([1, 7, 10**6]),
    blocks=st.lists(st.sampled_from(["203.0.113.0/24", "2001:db8::7", "AS64500"]), max_size=2),
    locks=st.lists(st.sampled_from(["alice", "u1"]), max_size=1),
    resets=st.lists(st.sampled_from(["bob", "doc"]), max_size=1),
    restricts=st.lists(st.sampled_from(["u2", "alice"]), max_size=1),
)
def test_the_replay_per_shard_and_source_bucket_is_the_whole_nights(
    tmp_path_factory: pytest.TempPathFactory, rows, shards, bucket_logins, blocks, locks, resets, restricts
):
    night = _night(rows)
    plan = _plan(blocks, locks, resets, restricts)
    whole = replay(plan, night, None, Config())
    paths = _shards(night, shards, tmp_path_factory.mktemp("replay"))
    with pytest.MonkeyPatch.context() as m:
        m.setattr(importlib.import_module("detector.recommend.replay"), "SOURCE_BUCKET_LOGINS", bucket_logins)
        parts = replay_shards(plan, paths, Config())
    assert parts.table.equals(whole.table)
    assert (parts.truth, parts.logins, parts.notes) == (whole.truth, whole.logins, whole.notes)
    assert not list(paths[0].parent.glob("replay-*")), "the buckets' files are removed"


@pytest.mark.parametrize("shards", [1, 3])
def test_an_addresss_failures_on_accounts_of_several_shards_ban_it_once(tmp_path: Path, shards: int):
    rows = [(0, i % 5, "failure", i * 0.5, False, 0.9) for i in range(10)] + [
        (0, 1, "success", 6.0, False, 0.1)
    ]
    night = _night(rows)
    whole = replay(_plan([], [], [], []), night, None, Config())
    with pytest.MonkeyPatch.context() as m:
        m.setattr(importlib.import_module("detector.recommend.replay"), "SOURCE_BUCKET_LOGINS", 1)
        parts = replay_shards(_plan([], [], [], []), _shards(night, shards, tmp_path), Config())
    assert whole.row("fail2ban")["attack_stopped"] == 5
    assert parts.table.equals(whole.table)


def _tables(t: PlanLogins) -> dict[str, pl.DataFrame]:
    """The tables, the distinct sets in a fixed order (their row order is not part of them)."""
    out = {"from_attackers": t.from_attackers, "legit": t.legit, "probing": t.probing().sort(pl.all())}
    for name in ("addresses", "anonymous_asns", "practitioners", "taken"):
        out[name] = getattr(t, name).sort(pl.all(), nulls_last=True)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(row, min_size=0, max_size=50),
    shards=st.integers(1, 4),
    attackers=st.lists(st.sampled_from(IPS[:5]), max_size=3),
    compromised=st.lists(st.sampled_from(["alice", "bob", "u1"]), max_size=2),
    shared=st.lists(st.sampled_from(IPS[:5]), max_size=1),
)
def test_the_plans_tables_per_shard_are_the_whole_nights(
    tmp_path_factory: pytest.TempPathFactory, rows, shards, attackers, compromised, shared
):
    night = _night(rows)
    ctx = LoginContext(tuple(attackers), tuple(compromised), tuple(attackers[:1]), tuple(shared), 0.5)
    whole = combine([logins_step(night.lazy(), ctx)])
    paths = _shards(night, shards, tmp_path_factory.mktemp("plan"))
    parts = combine([logins_task(p, ctx) for p in paths])
    for name, table in _tables(whole).items():
        assert _tables(parts)[name].equals(table), name


def test_an_owners_success_in_another_shard_spelling_keeps_the_address_off_the_probing_list(tmp_path: Path):
    """``Alice`` and ``alice`` may land in different shards: the plan reads both as ``alice``."""
    night = _night([(0, 0, "failure", 1.0, False, 0.2), (0, 1, "success", 2.0, False, 0.1)])
    ctx = LoginContext((), (), (), (), 0.5)
    paths = [p for p in _shards(night, 8, tmp_path) if pl.read_parquet(p).height]
    assert len(paths) == 2, "the two spellings are in two shards"
    assert combine([logins_task(p, ctx) for p in paths]).probing().is_empty()
    failed = next(p for p in paths if pl.read_parquet(p).get_column(C.OUTCOME).to_list() == ["failure"])
    assert combine([logins_task(failed, ctx)]).probing().height == 1, "alone, the failure is a probe"


def test_legit_logins_differing_only_past_the_sort_keys_come_in_one_order(tmp_path: Path):
    """A practitioner's and a non-practitioner's login of one account, address and service: the
    combined table's order must not depend on unique()'s (it did in about half the runs)."""
    rows = [
        (0, 2, "success", 0.0, True, 0.0),
        (0, 0, "failure", 0.0, False, 0.0),
        (0, 2, "success", 0.0, False, 0.0),
    ]
    ctx = LoginContext((), (), (), (), 0.5)
    night = _night(rows)
    tables = [combine([logins_step(night.lazy(), ctx)]).legit for _ in range(20)]
    tables += [combine([logins_task(p, ctx)]).legit for p in _shards(night, 1, tmp_path)]
    assert tables[0].height == 2
    assert all(t.equals(tables[0]) for t in tables)
