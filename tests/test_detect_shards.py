"""Detection and scoring per account shard give what the whole-night path gives."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detector.config import Config
from detector.detect import REGISTRY, detect, finding_hits
from detector.detect.shards import (
    SOURCE_SCOPE_COLUMNS,
    detect_sharded,
    event_order,
    partition,
    shard_count,
    shard_of,
    split_by_event,
    split_hits,
)
from detector.features import SORT_KEYS, windows
from detector.schema import C


@pytest.mark.parametrize(
    ("events", "per", "n"), [(0, 10, 1), (1, 10, 1), (10, 10, 1), (11, 10, 2), (95, 10, 10)]
)
def test_shard_count(events: int, per: int, n: int):
    assert shard_count(events, per) == n


def test_an_account_and_its_local_part_share_a_shard():
    df = pl.DataFrame(
        {C.ACCOUNT: ["bob", "bob@example.org", "bob@other.example", None, None, "alice@example.org"]}
    )
    shards = df.select(shard_of(7)).to_series().to_list()
    assert shards[0] == shards[1] == shards[2]
    assert shards[3] == shards[4]
    assert all(0 <= s < 7 for s in shards)


def test_builtin_detectors_declare_a_scope():
    from detector.detect.registry import _load_builtins

    _load_builtins()
    source = {n for n, d in REGISTRY.items() if d.scope == "source"}
    assert source == {"password_spraying", "credential_stuffing", "shared_address", "guessing_source"}


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """The enriched events of a small simulated night (stuffing, spraying, takeovers, benign users)."""
    from detector.enrich import enrich, find_databases, load_practitioners
    from detector.ingest import ingest
    from detector.simulate import simulate

    root = tmp_path_factory.mktemp("world")
    simulate(root, accounts=120, days=1, seed=5)
    cfg = Config()
    logs = sorted(str(p) for p in (root / "logs").rglob("*") if p.is_file())
    ingested = ingest(logs, cfg.ingest, root / "work")
    return enrich(
        ingested.events,
        geoip=find_databases(str(root / "geoip")),
        practitioners=load_practitioners(root / "practitioners.csv"),
        cfg=cfg.enrich,
    ).events.collect()


@pytest.mark.parametrize("in_memory", [True, False])
def test_partition_numbers_every_event_once(night: pl.DataFrame, tmp_path: Path, in_memory: bool):
    per = max(night.height // 4, 1)
    limit = night.height if in_memory else night.height - 1
    shards, tables = partition(night.lazy(), Config(), tmp_path, shard_events=per, in_memory_events=limit)
    assert shards.in_memory is in_memory
    assert len(shards) == shard_count(night.height, per)
    parts = [shards.get(k) for k in range(len(shards))]
    on_disk = [path for pieces in shards.pieces or [] for path in pieces.paths]
    assert (bool(on_disk) and all(path.exists() for path in on_disk)) is not in_memory
    ids = pl.concat([p.select(C.EVENT_ID) for p in parts]).to_series().sort()
    assert ids.to_list() == list(range(night.height))
    for part in parts:
        accounts = set(part.get_column(C.ACCOUNT).drop_nulls().to_list())
        for other in parts:
            if other is not part:
                assert not accounts & set(other.get_column(C.ACCOUNT).drop_nulls().to_list())
    assert tables.population.height > 0 and set(tables.sources) == {"src", "src_pairs", "prefix", "asn"}


@pytest.mark.parametrize("chunk", [1, 7, 100, 10**9])
def test_event_order_in_time_ranges_equals_one_sort(night: pl.DataFrame, chunk: int):
    n = 3
    whole = windows.number(night.lazy().with_row_index("_r")).select("_r", C.EVENT_ID, shard_of(n)).collect()
    expected = whole.sort("_r").drop("_r")
    assert event_order(night.lazy(), night.height, n, chunk_events=chunk).equals(expected)


_STAMPS = st.one_of(
    st.none(),
    st.integers(0, 5).map(lambda k: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(milliseconds=400 * k)),
)


@given(
    rows=st.lists(
        st.tuples(
            _STAMPS, st.sampled_from([None, "a", "b@x", "a@y"]), st.sampled_from([None, "1.2.3.4", "5.6.7.8"])
        ),
        max_size=40,
    ),
    chunk=st.integers(1, 50),
)
def test_event_order_equals_one_stable_sort_for_any_ties_and_nulls(
    rows: list[tuple[datetime | None, str | None, str | None]], chunk: int
):
    frame = pl.DataFrame(
        {
            C.TIMESTAMP: [r[0] for r in rows],
            C.ACCOUNT: [r[1] for r in rows],
            C.SOURCE_IP: [r[2] for r in rows],
            C.SOURCE_FILE: ["f"] * len(rows),
            C.LINE_NUMBER: [1] * len(rows),
        },
        schema={
            C.TIMESTAMP: pl.Datetime("us", "UTC"),
            C.ACCOUNT: pl.String,
            C.SOURCE_IP: pl.String,
            C.SOURCE_FILE: pl.String,
            C.LINE_NUMBER: pl.Int64,
        },
    ).select(SORT_KEYS)
    whole = windows.number(frame.lazy().with_row_index("_r")).select("_r", C.EVENT_ID, shard_of(2)).collect()
    got = event_order(frame.lazy(), frame.height, 2, chunk_events=chunk)
    assert got.equals(whole.sort("_r").drop("_r"))


def test_partition_in_memory_and_in_files_give_the_same_shards(night: pl.DataFrame, tmp_path: Path):
    per = max(night.height // 3, 1)
    mem, t1 = partition(night.lazy(), Config(), tmp_path / "m", shard_events=per)
    files, t2 = partition(night.lazy(), Config(), tmp_path / "f", shard_events=per, in_memory_events=0)
    assert (mem.in_memory, files.in_memory) == (True, False)
    for k in range(len(mem)):
        assert mem.get(k).equals(files.get(k))
    assert t1.population.sort(pl.all()).equals(t2.population.sort(pl.all()))  # group-by order varies
    assert t1.download_median == t2.download_median


@pytest.mark.parametrize("parts", [2, 3, 8])
def test_window_tables_in_key_parts_equal_one_pass(night: pl.DataFrame, parts: int):
    from detector.features import window_tables

    # some events without an address or prefix: their groups too fall whole into one part
    lf = windows.work_columns(
        night.lazy().with_columns(
            pl.when(pl.int_range(pl.len()) % 11 == 0).then(None).otherwise(pl.col(c)).alias(c)
            for c in (C.SOURCE_IP, C.PREFIX)
        ),
        Config().features.window,
    )
    one, many = window_tables(lf), window_tables(lf, parts)
    for name, table in one.sources.items():
        assert table.height > 0
        assert (
            many.sources[name].sort(pl.all(), nulls_last=True).equals(table.sort(pl.all(), nulls_last=True))
        )
    assert many.population.sort(pl.all()).equals(one.population.sort(pl.all()))
    assert many.download_median == one.download_median


def test_shard_frames_put_get_drop(tmp_path: Path):
    from detector.detect.shards import ShardFrames

    df = pl.DataFrame({"a": [1, 2, 3]})
    for in_memory in (True, False):
        frames = ShardFrames(tmp_path, f"x{in_memory}", 2, in_memory)
        frames.put(1, df)
        assert frames.get(1).equals(df) and frames.scan(1).collect().equals(df)
        assert frames.paths[1].exists() is not in_memory
        frames.drop(1)
        assert not frames.paths[1].exists()


def _canon(df: pl.DataFrame) -> pl.DataFrame:
    lists = [c for c, t in df.schema.items() if isinstance(t, pl.List)]
    return df.with_columns(
        [pl.col(c).list.eval(pl.element().cast(pl.String)).list.join(",") for c in lists]
    ).sort(df.columns, nulls_last=True)


@pytest.mark.parametrize(("shards", "in_memory"), [(1, True), (5, True), (5, False)])
def test_sharded_detection_and_scores_equal_the_whole_night(
    night: pl.DataFrame, tmp_path: Path, shards: int, in_memory: bool, monkeypatch: pytest.MonkeyPatch
):
    import detector.detect.shards as sh
    from detector.pipeline import default_model_path
    from detector.score import load_model, score

    monkeypatch.setattr(sh, "IN_MEMORY_EVENTS", night.height if in_memory else 0)
    if not in_memory:  # the cross-account tables in several key parts
        monkeypatch.setattr(sh, "TABLE_PART_EVENTS", night.height // 4)
    # on disk, the night is also numbered in time ranges (event_order)
    cfg = Config() if in_memory else Config().replace(engine={"sort_events": night.height // 7})
    whole = detect(night.lazy(), cfg)
    parts = detect_sharded(night.lazy(), cfg, None, tmp_path, shard_events=-(-night.height // shards))
    assert len(parts.shards) == shards
    a = whole.events.collect()
    b = parts.events.collect().sort(C.EVENT_ID)
    assert a.columns == b.columns
    assert a.equals(b)
    assert _canon(whole.findings).equals(_canon(parts.findings))
    assert whole.findings.height > 0 and whole.campaigns.height > 0
    assert whole.campaigns.equals(parts.campaigns)
    for model in (None, load_model(default_model_path())):
        s1, s2 = score(whole, model, cfg), score(parts, model, cfg)
        assert s1.accounts.equals(s2.accounts)
        assert s1.sources.equals(s2.sources)
        e1 = s1.events.lazy().select(C.EVENT_ID, C.RISK_SCORE).collect()
        e2 = s2.events.lazy().select(C.EVENT_ID, C.RISK_SCORE).collect()
        assert e1.equals(e2)


def test_shard_steps_run_from_a_pickled_context(night: pl.DataFrame, tmp_path: Path):
    """The per-shard steps are what a worker process (or a Spark task) runs: their context
    crosses a process boundary by pickling and gives the same frames on the other side."""
    import pickle

    import detector.detect.shards as sh
    from detector.features import History

    inputs, tables = partition(night.lazy(), Config(), tmp_path, shard_events=night.height)
    ctx = sh.DetectContext(Config(), History.empty(), tables)
    moved = pickle.loads(pickle.dumps(ctx))
    frame = inputs.get(0)
    features = sh.features_step(frame, ctx)
    assert features.equals(sh.features_step(frame, moved))
    with pytest.raises(ValueError, match="campaign keys"):
        sh.campaign_step(features, moved)
    logins = sh.source_inputs_step(features, moved)
    candidates = pickle.loads(pickle.dumps(sh.candidates_step(logins, moved)))
    keyed = pickle.loads(pickle.dumps(replace(moved, keys=sh.campaigns_step(candidates, moved))))
    assert sh.campaign_step(features, keyed).get_column(C.CAMPAIGN).drop_nulls().len() > 0


def _logins(rows: list[tuple[str | None, str | None, int | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={C.SOURCE_IP: pl.String, C.PREFIX: pl.String, C.ASN: pl.Int64}, orient="row"
    )


def test_source_networks_link_prefixes_through_asns():
    import detector.detect.shards as sh

    events = _logins(
        [
            ("10.0.0.1", "10.0.0.0/24", 1),
            ("10.0.1.1", "10.0.1.0/24", 1),
            ("10.0.1.2", "10.0.1.0/24", 2),  # the prefix has two ASNs: 1 and 2 are one network
            ("10.0.2.1", "10.0.2.0/24", 2),
            ("10.0.3.1", "10.0.3.0/24", None),  # an address GeoIP could not place
            ("10.0.3.2", "10.0.3.0/24", 3),
            ("10.0.4.1", "10.0.4.0/24", 4),
            ("bad", None, None),
            (None, None, None),
        ]
    )
    networks = dict(sh.source_networks(events.lazy()).iter_rows())
    assert networks["10.0.0.0/24"] == networks["10.0.1.0/24"] == networks["10.0.2.0/24"]
    assert (
        len({networks["10.0.0.0/24"], networks["10.0.3.0/24"], networks["10.0.4.0/24"], networks["bad"]}) == 4
    )


@given(
    st.lists(st.tuples(st.integers(0, 30), st.one_of(st.none(), st.integers(0, 6))), min_size=1, max_size=60),
    st.integers(1, 7),
)
def test_every_address_prefix_and_asn_lies_in_one_source_shard(rows: list[tuple[int, int | None]], n: int):
    """Whatever the addresses, prefixes and ASNs: the groups of the source-keyed rules are whole."""
    import detector.detect.shards as sh

    events = _logins([(f"10.0.{i // 4}.{i}", f"10.0.{i // 4}.0/24", asn) for i, asn in rows])
    shard = sh.source_shard_of(events, sh.source_networks(events.lazy()), n)
    assert shard.is_between(0, n - 1).all()
    keyed = events.with_columns(shard)
    for column in (C.SOURCE_IP, C.PREFIX, C.ASN):
        per = keyed.drop_nulls(column).group_by(column).agg(pl.col(sh.SHARD).n_unique())
        assert (per.get_column(sh.SHARD) == 1).all(), column


def test_source_scope_columns_exist_in_features(night: pl.DataFrame):
    cols = detect(night.lazy(), Config()).events.collect_schema().names()
    missing = [c for c in SOURCE_SCOPE_COLUMNS if c not in cols and not c.startswith("_")]
    assert not missing


@pytest.mark.parametrize(("shards", "batch"), [(1, 3), (3, 1), (3, 4), (5, 100), (4, 2)])
def test_merge_sorted_batches_restores_the_order(shards: int, batch: int):
    from detector.detect.shards import merge_sorted_batches

    ids = pl.Series(C.EVENT_ID, range(40), dtype=pl.UInt64)
    frame = pl.DataFrame([ids, (ids * 10).alias("x")])
    parts = [frame.filter(pl.col(C.EVENT_ID).hash(seed=1) % shards == k) for k in range(shards)]
    streams = [iter(p.iter_slices(batch)) for p in parts]
    merged = list(merge_sorted_batches(streams))
    assert pl.concat(merged).equals(frame)
    assert all(b.height > 0 for b in merged)


def test_merge_sorted_batches_of_nothing():
    from detector.detect.shards import merge_sorted_batches

    assert list(merge_sorted_batches([iter([]), iter([])])) == []


def test_read_batches_reads_every_row(tmp_path: Path):
    from detector.detect.shards import read_batches

    df = pl.DataFrame({"a": list(range(100))})
    df.write_parquet(tmp_path / "x.parquet", row_group_size=30)
    got = list(read_batches(tmp_path / "x.parquet", 25))
    assert all(b.height <= 25 for b in got)
    assert pl.concat(got).equals(df)


@pytest.mark.parametrize("sizes", [[], [5], [3, 4, 0, 2]])
def test_write_batches_gathers_row_groups_and_keeps_metadata(tmp_path: Path, sizes: list[int]):
    from detector.parquet_meta import read_metadata
    from detector.report.parquet import write_batches

    schema = pl.Schema({"a": pl.Int64, "b": pl.String})
    batches = [pl.DataFrame({"a": list(range(n)), "b": ["x"] * n}, schema=schema) for n in sizes]
    path = tmp_path / "out.parquet"
    assert write_batches(iter(batches), schema, path, {"run_id": "r1"}, row_group_rows=4) == sum(sizes)
    back = pl.read_parquet(path)
    assert back.schema == schema and back.height == sum(sizes)
    assert read_metadata(path)["run_id"] == "r1"


def test_read_batches_reads_only_the_columns_asked_for(tmp_path: Path):
    from detector.detect.shards import read_batches

    df = pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [1.0, 2.0, 3.0]})
    df.write_parquet(tmp_path / "x.parquet")
    got = pl.concat(list(read_batches(tmp_path / "x.parquet", 2, ["c", "a", "missing"])))
    assert got.equals(df.select("a", "c"))


def test_the_sort_size_is_not_part_of_the_configuration_digest():
    cfg = Config()
    assert cfg.replace(engine={"sort_events": 10}).digest() == cfg.digest()


@given(
    st.lists(
        st.one_of(st.none(), st.integers(0, 2**40), st.sampled_from([0, 1, 7, 1500])),
        max_size=40,
    )
)
def test_the_nights_download_median_is_the_whole_columns(counts: list[int | None]):
    lf = pl.LazyFrame({C.BYTES_OUT: counts}, schema={C.BYTES_OUT: pl.Int64})
    assert windows.night_download_median(lf) == lf.select(windows.download_median()).collect().item()


def test_the_download_median_with_a_negative_count_is_the_plain_one():
    lf = pl.LazyFrame({C.BYTES_OUT: [-5, 3, None, 10]}, schema={C.BYTES_OUT: pl.Int64})
    assert windows.night_download_median(lf) == lf.select(windows.download_median()).collect().item()


@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["brute_force", "password_spray", "impossible_travel"]),
            st.sampled_from(["T1110.001", "T1110.003", "T1078"]),
            st.sampled_from(["attack", "benign"]),
            st.none() | st.lists(st.none() | st.integers(0, 29), max_size=6),
        ),
        max_size=12,
    ),
    n=st.integers(1, 4),
    seed=st.integers(0, 3),
)
def test_split_hits_are_the_findings_hits_split_by_event(rows, n: int, seed: int):
    findings = pl.DataFrame(
        rows,
        schema={
            "detector": pl.String,
            "technique": pl.String,
            "kind": pl.String,
            "event_ids": pl.List(pl.UInt64),
        },
        orient="row",
    )
    event_shards = np.random.default_rng(seed).integers(0, n, 30).astype(np.uint16)
    want = split_by_event(finding_hits(findings), event_shards, n)
    got = list(split_hits(findings, event_shards, n))
    assert len(got) == n
    for g, w in zip(got, want, strict=True):
        assert g.equals(w)
