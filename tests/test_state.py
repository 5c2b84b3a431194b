import json
import os
import stat
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from detector.errors import StateError
from detector.features.baseline import History, update_history
from detector.schema import ENRICHED_SCHEMA, C, conform
from detector.state import (
    GENERATION_FILE,
    MANIFEST_SCHEMA,
    STATE_FILE,
    STATE_VERSION,
    State,
    base_for,
    fold_night,
    load_state,
    locked,
    make_current,
    prune,
    save_state,
    stage_generation,
)

NOW = datetime(2025, 3, 2, tzinfo=UTC)


def _events() -> pl.DataFrame:
    rows = {
        C.TIMESTAMP: [datetime(2025, 3, 1, h, tzinfo=UTC) for h in (1, 2, 3)],
        C.ACTION: ["login"] * 3,
        C.OUTCOME: ["success", "success", "failure"],
        C.ACCOUNT: ["a@x.org", "b@x.org", "a@x.org"],
        C.SOURCE_IP: ["192.0.2.1", "192.0.2.2", "198.51.100.7"],
        C.PREFIX: ["192.0.2.0/24", "192.0.2.0/24", "198.51.100.0/24"],
    }
    return conform(pl.DataFrame(rows).lazy(), ENRICHED_SCHEMA).collect()


def _state(run_id: str = "r1") -> State:
    history = update_history(History.empty(), _events())
    inputs = [{"path": "/logs/a.log", "size": 10, "sha256": "aa"}]
    shared = pl.DataFrame(
        {"scope": ["ip"], "key": ["192.0.2.1"], "legit_accounts": [2], "last_seen": [NOW]},
        schema={
            "scope": pl.String,
            "key": pl.String,
            "legit_accounts": pl.Int32,
            "last_seen": pl.Datetime("us", "UTC"),
        },
    )
    return State(history=history.to_frames(), shared=shared, run_id=run_id).with_inputs(inputs, run_id, NOW)


def test_missing_directory_is_an_empty_state(tmp_path):
    s = load_state(tmp_path / "nope")
    assert s.is_empty and s.history == {} and s.manifest.schema == MANIFEST_SCHEMA


def test_round_trip(tmp_path):
    s = _state()
    save_state(tmp_path, s, run_id="r1", now=NOW)
    back = load_state(tmp_path)
    assert back.run_id == "r1"
    assert back.processed() == {"aa"}
    for name, frame in s.history.items():
        assert back.history[name].equals(frame)
    assert back.shared.equals(s.shared)
    History.from_frames(back.history)  # the detection stage accepts it


def test_save_adds_a_generation_and_keeps_the_newest(tmp_path):
    for n in range(1, 5):
        save_state(tmp_path, _state(f"r{n}"), run_id=f"r{n}", now=NOW, keep=2, parent=n - 1)
    doc = json.loads((tmp_path / STATE_FILE).read_text())
    assert doc["generation"] == 4 and doc["run_id"] == "r4"
    assert sorted(p.name for p in tmp_path.glob("g*")) == ["g3", "g4"]
    assert load_state(tmp_path, generation=3).run_id == "r3"
    with pytest.raises(StateError, match="not kept"):
        load_state(tmp_path, generation=2)


def test_retention_keeps_the_current_chain_not_the_newest_numbers(tmp_path):
    """g3 re-ran g2's night against g1: g2 is a sibling and goes, g1 (the base of a re-run) stays."""
    for n, parent in ((1, 0), (2, 1), (3, 1)):
        save_state(tmp_path, _state(f"r{n}"), run_id=f"r{n}", now=NOW, keep=2, parent=parent)
    assert sorted(p.name for p in tmp_path.glob("g*")) == ["g1", "g3"]


def test_layout_before_generations_is_read_and_replaced(tmp_path):
    """A state written before generations (tables beside state.json) loads, and the next save retires it."""
    save_state(tmp_path, _state("r1"), run_id="r1", now=NOW)
    doc = json.loads((tmp_path / STATE_FILE).read_text())
    for entry in doc["tables"].values():
        old = tmp_path / entry["file"]
        entry["file"] = old.name.replace(".parquet", ".g1.parquet")
        old.rename(tmp_path / entry["file"])
    (tmp_path / "g1" / GENERATION_FILE).unlink()
    (tmp_path / "g1").rmdir()
    (tmp_path / STATE_FILE).write_text(json.dumps(doc))
    assert load_state(tmp_path).run_id == "r1"
    save_state(tmp_path, _state("r2"), run_id="r2", now=NOW)
    assert not list(tmp_path.glob("*.parquet")) and load_state(tmp_path).run_id == "r2"


def test_files_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        save_state(tmp_path / "s", _state(), run_id="r1", now=NOW)
        with locked(tmp_path / "s"):
            pass
    finally:
        os.umask(old)
    for p in [tmp_path / "s", *(tmp_path / "s").rglob("*")]:
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p


def test_with_inputs_is_idempotent():
    s = _state()
    again = s.with_inputs([{"path": "/other/name.log", "size": 10, "sha256": "aa"}], "r2", NOW)
    assert again.manifest.height == 1


def test_corrupt_table_is_an_error(tmp_path):
    save_state(tmp_path, _state(), run_id="r1", now=NOW)
    victim = next(tmp_path.glob("g*/history.accounts.parquet"))
    victim.write_bytes(victim.read_bytes()[:-20] + b"x" * 20)
    with pytest.raises(StateError, match="corrupt"):
        load_state(tmp_path)


@pytest.mark.parametrize(
    "index",
    [
        "{not json",
        json.dumps({"format": "something-else"}),
        json.dumps({"format": "detector-state", "version": STATE_VERSION + 1, "tables": {}}),
        json.dumps({"format": "detector-state", "version": STATE_VERSION, "tables": {}}),
    ],
    ids=["invalid-json", "other-format", "newer-version", "no-manifest"],
)
def test_bad_index_is_an_error(tmp_path, index):
    (tmp_path / STATE_FILE).write_text(index)
    with pytest.raises(StateError) as e:
        load_state(tmp_path)
    assert e.value.exit_code == 2


def test_missing_table_is_an_error(tmp_path):
    save_state(tmp_path, _state(), run_id="r1", now=NOW)
    next(tmp_path.glob("g*/shared.parquet")).unlink()
    with pytest.raises(StateError, match="missing"):
        load_state(tmp_path)


def test_tables_without_index_are_an_error(tmp_path):
    save_state(tmp_path, _state(), run_id="r1", now=NOW)
    (tmp_path / STATE_FILE).unlink()
    with pytest.raises(StateError, match=r"state\.json is missing"):
        load_state(tmp_path)


def test_lock_refuses_a_second_run(tmp_path):
    with locked(tmp_path), pytest.raises(StateError, match="in use"), locked(tmp_path):
        pass
    with locked(tmp_path):  # released
        pass


@pytest.mark.parametrize(
    ("column", "days_old", "kept"),
    [("last_seen", 10, 1), ("last_seen", 100, 0), ("end", 100, 0), ("processed_at", 89, 1)],
)
def test_prune_by_horizon(column, days_old, kept):
    from datetime import timedelta

    df = pl.DataFrame({column: [NOW - timedelta(days=days_old)]}, schema={column: pl.Datetime("us", "UTC")})
    assert prune(df, NOW, 90).height == kept


def test_prune_keeps_frames_without_time():
    df = pl.DataFrame({"feature": ["asn"], "count": [3]})
    assert prune(df, NOW, 1).height == 1


D1, D2, D3 = (datetime(2025, 3, d, tzinfo=UTC) for d in (1, 2, 3))


@pytest.mark.parametrize(
    ("window_start", "inputs", "number", "later"),
    [
        (D3, {"c"}, None, False),  # a new night: the current state
        (D2, {"b"}, 1, False),  # the latest night again: the generation before it, then replaced
        (D2, {"b-recompressed"}, 1, False),  # same night by its window, whatever the files
        (None, {"b"}, 1, False),  # no events: by the inputs alone
        (D1, {"a"}, 0, True),  # the first night again: the empty state; night 2 stays
        (D1 + timedelta(hours=12), {"x"}, 1, True),  # an older night run late: night 2 stays
    ],
)
def test_base_for_a_night_the_state_holds(tmp_path, window_start, inputs, number, later):
    for n, (start, sha) in enumerate(((D1, "a"), (D2, "b")), 1):
        doc = stage_generation(
            tmp_path, _state(f"r{n}"), generation=n, parent=n - 1, run_id=f"r{n}", now=NOW,
            window=(start, start + timedelta(hours=23)), inputs=[sha],
        )  # fmt: skip
        make_current(tmp_path, doc)
    base = base_for(tmp_path, load_state(tmp_path), window_start, inputs)
    assert (base.number, base.later_nights) == (number, later)
    assert (base.note is None) == (number is None)


def _night(path: str) -> pl.LazyFrame:
    """Tonight: a@x.org logs in from its home and (risky) from an attacker; c@x.org is new."""
    rows = {
        C.TIMESTAMP: [datetime(2025, 3, 2, h, tzinfo=UTC) for h in (1, 2, 3)],
        C.ACTION: ["login"] * 3,
        C.OUTCOME: ["success"] * 3,
        C.ACCOUNT: ["a@x.org", "a@x.org", "c@x.org"],
        C.SOURCE_IP: ["192.0.2.1", "203.0.113.9", "192.0.2.3"],
        C.PREFIX: ["192.0.2.0/24", "203.0.113.0/24", "192.0.2.0/24"],
        C.SOURCE_FILE: [path] * 3,
    }
    events = conform(pl.DataFrame(rows).lazy(), ENRICHED_SCHEMA)
    return events.with_columns(pl.Series(C.RISK_SCORE, [0.1, 0.99, 0.1]))


class _Verdicts:
    def __init__(self, compromised: list[str], malicious: list[str]) -> None:
        text = {C.ACCOUNT: pl.String, C.SOURCE_IP: pl.String, C.VERDICT: pl.String}
        self.accounts = pl.DataFrame(
            {C.ACCOUNT: compromised, C.VERDICT: ["compromised"] * len(compromised)}, schema_overrides=text
        )
        self.sources = pl.DataFrame(
            {C.SOURCE_IP: malicious, C.VERDICT: ["malicious"] * len(malicious)}, schema_overrides=text
        ).with_columns(pl.lit(False).alias("shared_address"))


def _addresses(state: State, account: str) -> set[str]:
    h = History.from_frames(state.history).accounts
    return set(h.filter((pl.col(C.ACCOUNT) == account) & (pl.col("feature") == C.SOURCE_IP))["value"])


@pytest.mark.parametrize(
    ("sha", "verdicts", "a_learns", "c_learns"),
    [
        ("bb", _Verdicts([], []), {"192.0.2.1", "203.0.113.9"}, True),
        ("bb", _Verdicts(["a@x.org"], ["203.0.113.9"]), {"192.0.2.1"}, True),
        ("aa", _Verdicts([], []), {"192.0.2.1"}, False),  # inputs already folded in: nothing learned twice
    ],
    ids=["new night", "attacker not learned", "night run again"],
)
def test_fold_night_learns_what_the_state_may_learn_once(sha, verdicts, a_learns, c_learns):
    from detector.config import Config

    before = _state()
    inputs = [{"path": "/logs/b.log", "size": 10, "sha256": sha}]
    after = fold_night(
        before, History.from_frames(before.history), verdicts, events=_night("/logs/b.log"),
        campaigns=pl.DataFrame(), plan=pl.DataFrame({"measure_id": ["M1"]}), inputs=inputs, run_id="r2",
        now=NOW + timedelta(days=1), end=NOW + timedelta(hours=3), cfg=Config(),
    )  # fmt: skip
    assert _addresses(after, "a@x.org") == a_learns
    assert bool(_addresses(after, "c@x.org")) is c_learns
    assert after.manifest.height == (2 if sha == "bb" else 1)
    assert after.run_id == "r2" and after.plan is not None and after.plan.height == 1
