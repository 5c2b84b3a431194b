"""The Spark engine (``run --engine spark``) in local mode gives the local engine's verdicts and plan.

One JVM for the whole test session: the session-scoped ``spark`` fixture lives in this module only,
whose tests run on one xdist worker (``xdist_group`` with ``--dist loadgroup``, as ``make test``
runs). Without a Java runtime every test here skips and says so.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import polars as pl
import pytest

pyspark = pytest.importorskip("pyspark", reason="PySpark is not installed (pip install -e '.[dev]')")

from detector import spark as spark_engine  # noqa: E402
from detector.config import Config  # noqa: E402
from detector.pipeline import run  # noqa: E402
from detector.schema import C  # noqa: E402

pytestmark = [
    pytest.mark.xdist_group("spark"),
    pytest.mark.slow,
    # four nightly runs in the module's first test (two engines x two nights): minutes on a busy machine
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        spark_engine.java_missing() is not None,
        reason=f"Spark needs Java: {spark_engine.java_missing()}; {spark_engine.JAVA_HINT}",
    ),
]


@pytest.fixture(scope="session")
def spark():
    session = spark_engine.session("local[2]", conf={"spark.sql.shuffle.partitions": "4"})
    session.sparkContext.setLogLevel("ERROR")
    yield session
    with contextlib.suppress(Exception):  # a JVM already gone (killed by a timeout) has nothing to stop
        session.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from detector.simulate import simulate

    root = tmp_path_factory.mktemp("spark-world")
    simulate(root, accounts=80, days=2, seed=13)
    return root


def _night(world: Path, day: int) -> list[str]:
    return [str(d) for d in sorted((world / "logs").iterdir())[day : day + 1]]


def _run(world: Path, out: Path, state: Path, engine: str, spark_master: str | None = None):
    """Both simulated nights through ``run`` with a state (the second night reads the first's)."""
    common = {"practitioners": world / "practitioners.csv", "geoip_dir": world / "geoip", "cfg": Config()}
    return [
        run(
            _night(world, d),
            out / str(d),
            state_dir=state,
            engine=engine,
            spark_master=spark_master,
            **common,
        )
        for d in range(2)
    ]


SHARD_EVENTS = 600
"""Events per account shard in these runs: several shards a night (Spark tasks in each step)."""


@pytest.fixture(scope="module")
def both(world: Path, tmp_path_factory: pytest.TempPathFactory, spark) -> dict[str, Path]:
    from detector.detect import shards

    outs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shards, "SHARD_EVENTS", SHARD_EVENTS)
        for engine in ("local", "spark"):
            root = tmp_path_factory.mktemp(f"runs-{engine}")
            _run(world, root / "out", root / "state", engine)
            outs[engine] = root
    return outs


def _table(root: Path, night: int, name: str) -> pl.DataFrame:
    return pl.read_parquet(root / "out" / str(night) / name)


ACCOUNT_KEYS = (C.ACCOUNT, "verdict", C.RISK_SCORE)
SOURCE_KEYS = (C.SOURCE_IP, "verdict", C.RISK_SCORE)
PLAN_KEYS = ("action", "target_type", "target", "scope", "duration_hours")


@pytest.mark.parametrize("night", [0, 1])
@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("accounts.parquet", ACCOUNT_KEYS),
        ("sources.parquet", SOURCE_KEYS),
        ("recommendations.parquet", PLAN_KEYS),
    ],
)
def test_spark_gives_the_local_engines_verdicts_and_plan(both, night, name, keys):
    local, spark = (_table(both[e], night, name) for e in ("local", "spark"))
    cols = [k for k in keys if k in local.columns]
    assert len(cols) >= 2, f"{name} lacks {keys}"
    assert local.height > 0
    left, right = (t.select(cols).sort(cols, nulls_last=True) for t in (local, spark))
    assert left.equals(right)


@pytest.mark.parametrize("night", [0, 1])
def test_spark_gives_the_same_events(both, night):
    local, spark = (_table(both[e], night, "events.parquet") for e in ("local", "spark"))
    assert local.height > 0
    assert local.drop(C.SOURCE_FILE).equals(spark.drop(C.SOURCE_FILE))


def test_the_nights_verdicts_differ_so_the_test_can_fail(both):
    """The two nights' verdicts differ: comparing one night with another would fail above."""
    a, b = (_table(both["local"], n, "accounts.parquet").select(ACCOUNT_KEYS) for n in (0, 1))
    assert not a.sort(C.ACCOUNT).equals(b.sort(C.ACCOUNT))


def test_the_state_is_written_once_per_night_by_the_driver(both):
    from detector.state import load_state

    local, spark = (load_state(both[e] / "state") for e in ("local", "spark"))
    assert local.generation == spark.generation == 2
    assert local.history is not None and spark.history is not None
    for name, frame in local.history.items():
        assert frame.sort(frame.columns).equals(spark.history[name].sort(frame.columns)), name


def test_the_nights_have_several_account_shards(both):
    shards = list((both["spark"] / "out").rglob("detection-*.parquet"))
    assert not shards  # the work directory is removed with the staging directory
    events = _table(both["spark"], 0, "events.parquet").height
    assert events > 2 * SHARD_EVENTS


def test_spark_ingestion_per_file_equals_local_ingestion(world, spark, tmp_path):
    """Several files (both days) at once: the cross-file steps run on the driver over one table."""
    from detector.ingest import ingest

    logs = [str(p) for p in sorted((world / "logs").rglob("*")) if p.is_file()]
    assert len(logs) > 1
    local = ingest(logs, Config().ingest, tmp_path / "local")
    remote = spark_engine.ingest(spark, logs, Config().ingest, tmp_path / "spark")
    assert remote.events.collect().equals(local.events.collect())
    assert remote.noise == local.noise
    assert remote.inputs == local.inputs
    assert remote.lines_read == local.lines_read
    assert remote.quarantine.sort(C.SOURCE_FILE, C.LINE_NUMBER).equals(
        local.quarantine.sort(C.SOURCE_FILE, C.LINE_NUMBER)
    )


def test_standard_input_is_refused(spark, tmp_path):
    from detector.errors import InputError

    with pytest.raises(InputError, match="standard input"):
        spark_engine.ingest(spark, ["-"], Config().ingest, tmp_path)
