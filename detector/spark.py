"""The same engine on Apache Spark: Spark moves Arrow batches between the engine's own functions.

``detector run --engine spark [--spark-master URL]`` (extra ``detector[spark]``) runs:

1. **ingest**, one Spark task per input file (``mapInArrow``): each task calls
   :func:`detector.ingest.ingest` on its file and returns the events with the file's manifest,
   noise counts and kept quarantine rows. The driver orders the events as one local ingestion
   would (time, then file, then line) and applies the cross-file steps (copies logged to two files,
   Dovecot/Postfix pairs across files) to that one table: a narrow global step.
2. **enrich**, one Spark task per block of events: the night's shared-address counts are a global
   table (the distinct successful (address, account) pairs of every block, combined on the driver
   with :func:`detector.enrich.shared.counts_from_pairs` and merged with the state's); each block is
   then enriched by :func:`detector.enrich.enrich` against it, the GeoIP databases and the
   practitioner directory shipped to the executors with the job (``SparkContext.addFile``).
3. **detect and score**: the engine's own ``detect_sharded`` and ``score`` with
   :class:`SparkWorkers` as their workers: each per-shard task (features, campaign candidates,
   source and account detectors, finish; event risk, hosted marks, accounts) is one Spark task,
   the narrow global steps between them stay on the driver, as with the local worker processes.

The state is read and updated by the driver only, once, as in the local engine; the reports go
through the same staging and publication (:mod:`detector.publish`). ``docs/spark.md`` says how to
submit to a cluster and how a run publishes on object stores.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from detector.config import Config, IngestConfig
from detector.errors import ConfigError, InputError

JAVA_HINT = (
    "Spark needs a Java runtime 17 or later: install one (Debian/Ubuntu: "
    "`apt-get install openjdk-17-jre-headless`) or set JAVA_HOME"
)
INSTALL_HINT = "install the extra: pip install 'detector[spark]'"

FILE = "_file"
ORDER = "_order"
META = "_meta"

LOCAL_MASTER = "local[2]"
"""The master without ``--spark-master`` nor ``spark.master`` in the environment's Spark configuration."""

ENRICH_ROWS = 250_000
"""Events per enrichment task (rows per Spark partition of the events)."""


def java_missing() -> str | None:
    """Why Spark cannot start here (no Java runtime), or ``None``."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return None
    if shutil.which("java"):
        return None
    return "no Java runtime found (java is not on PATH and JAVA_HOME is not set)"


def session(
    master: str | None = None, *, app_name: str = "detector", conf: dict[str, str] | None = None
) -> Any:
    """A Spark session for the engine: the active one if any (``spark-submit``, a test's), else a new one.

    Executors run this interpreter's Python (``PYSPARK_PYTHON`` unless set), in UTC, with Arrow on.
    ``master``: a master URL (``local[2]``, ``yarn``, ``k8s://...``, ``spark://...``); ``None``: the
    one ``spark-submit`` gave, else :data:`LOCAL_MASTER`.

    Raises:
        ConfigError: PySpark is not installed, or there is no Java runtime.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:
        raise ConfigError("--engine spark needs PySpark", hint=INSTALL_HINT) from e
    if master is None:
        try:
            active = SparkSession.getActiveSession()
        except Exception:  # a JVM that died under this process: start anew
            active = None
        if active is not None:
            return active
    missing = java_missing()
    if missing:
        raise ConfigError(missing, hint=JAVA_HINT)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    elif "PYSPARK_GATEWAY_PORT" not in os.environ:  # not under spark-submit, which gave its master
        builder = builder.master(LOCAL_MASTER)
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.executorEnv.PYSPARK_PYTHON": os.environ["PYSPARK_PYTHON"],
        "spark.ui.showConsoleProgress": "false",
        **(conf or {}),
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def arrow_schema(schema: pl.Schema | dict[str, pl.DataType]) -> pa.Schema:
    """The Arrow schema Spark is told for a polars schema: plain ``string`` (polars writes
    ``large_string``), unsigned integers as the next wider signed type (Spark has none)."""
    return pa.schema(
        [pa.field(f.name, _spark_type(f.type)) for f in pl.DataFrame(schema=schema).to_arrow().schema]
    )


def _spark_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_unsigned_integer(t):
        return pa.int64()
    if pa.types.is_large_list(t) or pa.types.is_list(t):
        return pa.list_(_spark_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _spark_type(f.type)) for f in t])
    return t


def spark_schema(schema: pa.Schema) -> Any:
    """The Spark ``StructType`` of an Arrow schema."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def to_batches(frame: pl.DataFrame, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """``frame`` as record batches of exactly ``schema`` (its columns, in its order, cast)."""
    table = frame.select(schema.names).to_arrow().cast(schema)
    yield from table.to_batches()


# ---------------------------------------------------------------- ingestion, one task per file


@dataclass(frozen=True)
class _FileMeta:
    inputs: list[tuple[str, int | None, str]]
    noise: dict[str, int]
    lines: int
    claimed: int
    quarantined: int
    events: int
    warnings: list[str]
    quarantine: str
    """Arrow IPC stream of the kept quarantine rows, base64."""
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def _ipc(frame: pl.DataFrame) -> str:
    sink = io.BytesIO()
    frame.write_ipc_stream(sink)
    return base64.b64encode(sink.getvalue()).decode("ascii")


def _from_ipc(text: str) -> pl.DataFrame:
    return pl.read_ipc_stream(io.BytesIO(base64.b64decode(text)))


def ingest_schema() -> pa.Schema:
    """What an ingestion task returns: the events, their file and order, and one metadata row per file."""
    from detector.schema import EVENT_SCHEMA

    base = arrow_schema(EVENT_SCHEMA)
    return pa.schema(
        [*base, pa.field(FILE, pa.int64()), pa.field(ORDER, pa.int64()), pa.field(META, pa.string())]
    )


def ingest_file(index: int, path: str, cfg: IngestConfig, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """One input file through :func:`detector.ingest.ingest`: its events, then its metadata row."""
    from detector.ingest import ingest
    from detector.schema import QUARANTINE_SCHEMA

    with tempfile.TemporaryDirectory(prefix="detector-spark-") as tmp:
        try:
            result = ingest([path], cfg, Path(tmp))
        except InputError as e:  # a file without one mail log line: the driver decides over the night
            if "no recognisable mail log line" not in e.message:
                raise
            meta = _FileMeta([], {}, 0, 0, 0, 0, [], _ipc(pl.DataFrame(schema=QUARANTINE_SCHEMA)), str(e))
        else:
            offset = 0
            for batch in pq.ParquetFile(result.events_path).iter_batches(batch_size=64 * 1024):
                df = pl.from_arrow(batch)
                assert isinstance(df, pl.DataFrame)
                df = df.with_columns(
                    pl.lit(index, pl.Int64).alias(FILE),
                    pl.int_range(offset, offset + df.height, dtype=pl.Int64).alias(ORDER),
                    pl.lit(None, pl.String).alias(META),
                )
                offset += df.height
                yield from to_batches(df, schema)
            meta = _FileMeta(
                inputs=[(p, s, h) for p, s, h in result.inputs],
                noise=dict(result.noise),
                lines=result.lines_read,
                claimed=result.claimed,
                quarantined=result.quarantined,
                events=result.event_count,
                warnings=list(result.warnings),
                quarantine=_ipc(result.quarantine),
            )
    row = pl.DataFrame(
        {FILE: [index], META: [meta.to_json()]}, schema={FILE: pl.Int64, META: pl.String}
    ).with_columns(pl.lit(None).alias(n) for n in schema.names if n not in (FILE, META))
    yield from to_batches(row, schema)


def _ingest_tasks(cfg: IngestConfig, schema: pa.Schema) -> Any:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for index, path in zip(
                batch.column("index").to_pylist(), batch.column("path").to_pylist(), strict=True
            ):
                yield from ingest_file(index, path, cfg, schema)

    return run


def ingest(spark: Any, paths: Sequence[str | Path], cfg: IngestConfig, work_dir: Path) -> Any:
    """:func:`detector.ingest.ingest` with one Spark task per input file; the same ``IngestResult``.

    The input files must be readable by the executors at the same paths (local mode, or storage
    every node mounts). Events land in ``work_dir/events.parquet``, ordered as one local ingestion
    orders them.
    """
    import time

    from detector.ingest import IngestResult
    from detector.ingest.copies import drop_copies, unique_contents
    from detector.ingest.sources import STDIN, expand
    from detector.schema import QUARANTINE_SCHEMA, C

    started = time.perf_counter()
    files, warnings = unique_contents(expand([str(p) for p in paths]))
    if any(f.path == STDIN for f in files):
        raise InputError(
            "--engine spark reads files, not standard input", hint="write the logs to a file first"
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    schema = ingest_schema()
    listing = spark.createDataFrame(
        [(i, str(Path(f.path).resolve())) for i, f in enumerate(files)], "index long, path string"
    ).repartition(max(1, len(files)))
    out = listing.mapInArrow(_ingest_tasks(cfg, schema), spark_schema(schema))
    staged = work_dir / "spark-ingest"
    out.write.mode("overwrite").parquet(str(staged))
    rows = pl.scan_parquet(str(staged / "*.parquet"))
    metas = rows.filter(pl.col(META).is_not_null()).select(FILE, META).collect().sort(FILE)
    events_path = work_dir / "events.parquet"
    (
        rows.filter(pl.col(META).is_null())
        .sort(C.TIMESTAMP, FILE, ORDER, nulls_last=True)
        .drop(FILE, ORDER, META)
        .pipe(_conform_events)
        .sink_parquet(events_path)
    )
    shutil.rmtree(staged, ignore_errors=True)

    inputs: list[tuple[str, int | None, str]] = []
    noise: Counter[str] = Counter()
    quarantine, lines, claimed, quarantined, count = [], 0, 0, 0, 0
    for text in metas.get_column(META):
        meta = json.loads(text)
        inputs.extend(tuple(i) for i in meta["inputs"])  # type: ignore[misc]
        noise.update(meta["noise"])
        lines += meta["lines"]
        claimed += meta["claimed"]
        quarantined += meta["quarantined"]
        count += meta["events"]
        warnings.extend(meta["warnings"])
        quarantine.append(_from_ipc(meta["quarantine"]))
    if claimed == 0 and lines == 0 and metas.height and json.loads(metas[META][0]).get("error"):
        raise InputError(json.loads(metas[META][0])["error"])
    text_files = sum(1 for f in files if not f.is_table)
    if text_files > 1:
        from detector.ingest import WRITER_OPTIONS
        from detector.ingest.across import join_across_files
        from detector.ingest.logouts import fill_file

        # a logout whose login is in another file: as one local ingestion of all the files pairs it
        fill_file(events_path, cfg.pairing_memory_bytes, WRITER_OPTIONS)

        copied = drop_copies(events_path)
        if copied:
            count -= copied
            noise["noise:copy"] += copied
            warnings.append(
                f"{copied:,} event(s) logged in two files (mail.log and mail.warn/mail.err) counted once"
            )
        merged = join_across_files(events_path)
        count -= merged
        if merged:
            noise["noise:merged"] += merged
    kept = pl.concat(quarantine) if quarantine else pl.DataFrame(schema=QUARANTINE_SCHEMA)
    return IngestResult(
        events=pl.scan_parquet(events_path),
        events_path=events_path,
        quarantine=kept,
        noise=dict(noise),
        inputs=inputs,
        lines_read=lines,
        warnings=warnings,
        elapsed=time.perf_counter() - started,
        event_count=count,
        claimed=claimed,
        quarantined=quarantined,
    )


def _conform_events(lf: pl.LazyFrame) -> pl.LazyFrame:
    from detector.schema import EVENT_SCHEMA

    return lf.select([pl.col(n).cast(t) for n, t in EVENT_SCHEMA.items()])


# ---------------------------------------------------------------- enrichment, one task per block


@dataclass(frozen=True)
class _Shipped:
    """What an enrichment task reads besides its events: file names resolved with ``SparkFiles``."""

    geoip: dict[str, str]
    """kind -> file name of the GeoIP databases shipped with the job."""
    practitioners: bytes | None
    shared: bytes
    hosting_asns: tuple[int, ...]
    cfg: Any


def _ship_geoip(spark: Any, geoip: Any) -> dict[str, str]:
    """Ship each GeoIP database found with the job; kind -> file name on the executors."""
    from detector.enrich.geoip import KINDS

    shipped = {}
    for kind in KINDS:
        db = geoip.get(kind) if geoip is not None else None
        if db is not None:
            spark.sparkContext.addFile(str(db.path))
            shipped[kind] = Path(db.path).name
    return shipped


def _executor_geoip(shipped: dict[str, str]) -> Any:
    from pyspark import SparkFiles

    from detector.enrich.geoip import GeoIPDatabases, find_databases

    if not shipped:
        return GeoIPDatabases()
    folder = Path(SparkFiles.get(next(iter(shipped.values())))).parent
    return find_databases(folder)


def _ipc_bytes(frame: pl.DataFrame) -> bytes:
    sink = io.BytesIO()
    frame.write_ipc(sink, compression="lz4")
    return sink.getvalue()


def _pairs_tasks(schema: pa.Schema) -> Any:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from detector.enrich.shared import success_pairs

        for batch in batches:
            df = pl.from_arrow(batch)
            assert isinstance(df, pl.DataFrame)
            yield from to_batches(success_pairs(df.lazy()).collect(), schema)

    return run


def _enrich_tasks(shipped: Any, schema: pa.Schema) -> Any:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from detector.enrich import enrich

        geoip = _executor_geoip(shipped.geoip)
        directory = pl.read_ipc(io.BytesIO(shipped.practitioners)) if shipped.practitioners else None
        shared = pl.read_ipc(io.BytesIO(shipped.shared))
        for batch in batches:
            df = pl.from_arrow(batch)
            assert isinstance(df, pl.DataFrame)
            order = df.get_column(ORDER)
            out = enrich(
                df.drop(ORDER), geoip=geoip, practitioners=directory, history_shared=shared, cfg=shipped.cfg
            ).events.collect()
            yield from to_batches(out.with_columns(order), schema)

    return run


def enrich(
    spark: Any,
    events_path: Path,
    work_dir: Path,
    cfg: Config,
    *,
    prior_shared: pl.DataFrame | None,
    geoip: Any,
    practitioners: pl.DataFrame | None,
) -> tuple[pl.LazyFrame, dict[str, Any], list[str]]:
    """:func:`detector.enrich.enrich` per block of events in Spark; the enriched events in event order.

    Returns the enriched events (``work_dir/enriched.parquet``), the enrichment's record and warnings.
    """
    from detector.enrich import _geoip_warnings, _stale_warnings
    from detector.enrich.shared import LAST_SEEN, SHARED_SCHEMA, counts_from_pairs, merge_shared
    from detector.schema import ENRICHED_SCHEMA, C

    frame = pl.scan_parquet(events_path).with_row_index(ORDER).with_columns(pl.col(ORDER).cast(pl.Int64))
    numbered = work_dir / "events-numbered.parquet"
    frame.sink_parquet(numbered, row_group_size=ENRICH_ROWS)
    n = int(pl.scan_parquet(numbered).select(pl.len()).collect().item())
    events = spark.read.parquet(str(numbered)).repartition(max(1, -(-n // ENRICH_ROWS)))

    pairs_schema = arrow_schema(
        {C.SOURCE_IP: pl.String, C.ACCOUNT: pl.String, LAST_SEEN: SHARED_SCHEMA[LAST_SEEN]}
    )
    partial = events.mapInArrow(_pairs_tasks(pairs_schema), spark_schema(pairs_schema)).toArrow()
    pairs = (
        pl.from_arrow(partial)
        .group_by(C.SOURCE_IP, C.ACCOUNT)
        .agg(pl.col(LAST_SEEN).max())
        .sort(C.SOURCE_IP, C.ACCOUNT)
    )
    assert isinstance(pairs, pl.DataFrame)
    tonight = counts_from_pairs(pairs)
    shared = merge_shared(tonight, prior_shared) if prior_shared is not None else tonight

    shipped = _Shipped(
        geoip=_ship_geoip(spark, geoip),
        practitioners=_ipc_bytes(practitioners) if practitioners is not None else None,
        shared=_ipc_bytes(shared),
        hosting_asns=tuple(cfg.enrich.hosting_asns),
        cfg=cfg.enrich,
    )
    out_schema = arrow_schema({**ENRICHED_SCHEMA, ORDER: pl.Int64})
    staged = work_dir / "spark-enriched"
    events.mapInArrow(_enrich_tasks(shipped, out_schema), spark_schema(out_schema)).write.mode(
        "overwrite"
    ).parquet(str(staged))
    enriched = work_dir / "enriched.parquet"
    (
        pl.scan_parquet(str(staged / "*.parquet"))
        .sort(ORDER)
        .drop(ORDER)
        .select([pl.col(c).cast(t) for c, t in ENRICHED_SCHEMA.items()])
        .sink_parquet(enriched)
    )
    shutil.rmtree(staged, ignore_errors=True)
    numbered.unlink(missing_ok=True)
    newest = pl.scan_parquet(enriched).select(pl.col(C.TIMESTAMP).max()).collect().item()
    warnings = [*_geoip_warnings(geoip), *_stale_warnings(geoip, newest)]
    metadata = {
        "geoip": geoip.metadata() if geoip is not None else {},
        "hosting_asns": list(cfg.enrich.hosting_asns),
        "shared": {
            "tonight_keys": tonight.height,
            "history_keys": 0 if prior_shared is None else prior_shared.height,
            "merged_keys": shared.height,
        },
        "engine": "spark",
    }
    return pl.scan_parquet(enriched), metadata, warnings


def analyse(
    spark: Any,
    events_path: Path,
    cfg: Config,
    *,
    work_dir: Path,
    prior: Any = None,
    geoip: Any = None,
    practitioners: pl.DataFrame | None = None,
    model: Any = None,
    step: Any = None,
    shard_events: int | None = None,
) -> Any:
    """:func:`detector.engine.analyse` with enrichment, detection and scoring in Spark.

    Detection and scoring are the engine's own (``detect_sharded``, ``score``) with their per-shard
    tasks run by :class:`SparkWorkers`; ``shard_events``: events per account shard (default the
    local engine's).
    """
    from detector import engine
    from detector.detect.shards import detect_sharded
    from detector.score import score

    prior = prior or engine.Prior()
    step = step or engine._quiet
    with step("enrich"):
        enriched, metadata, warnings = enrich(
            spark, events_path, work_dir, cfg, prior_shared=prior.state.shared, geoip=geoip,
            practitioners=practitioners,
        )  # fmt: skip
    with SparkWorkers(spark) as workers:
        with step("detect"):
            detection = detect_sharded(
                enriched, cfg, prior.history, work_dir / "shards", shard_events=shard_events,
                known_campaigns=prior.state.campaigns, workers=workers,
            )  # fmt: skip
        loaded = engine._load(model)
        with step("score"):
            scores = score(detection, loaded, cfg, workers=workers)
    return engine.Analysis(
        events=enriched, detection=detection, scores=scores, model=loaded, prior=prior,
        enrich_metadata=metadata, warnings=tuple(warnings),
    )  # fmt: skip


# ---------------------------------------------------------------- detection and scoring, one task per shard


class SparkWorkers:
    """The engine's :class:`detector.workers.Workers` on Spark: each per-shard task ``fn(item, ctx)``
    of detection and scoring is one Spark task.

    The engine's orchestration (``detect_sharded``, ``score_shards``) is unchanged: it hands each
    map's task, items (a shard's frame, or its Parquet file under the work directory) and context
    to :meth:`map`, which ships the context once per map (a broadcast) and returns the results in
    the items' order, as the local workers do.
    """

    parallel = True
    """Items and results cross a process boundary (the engine keeps large shards in files)."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self.n = int(spark.sparkContext.defaultParallelism)

    def __enter__(self) -> SparkWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, shards: int) -> SparkWorkers:
        return self

    def close(self) -> None:
        pass

    def map(self, fn: Any, items: Any, ctx: Any) -> Iterator[Any]:
        """``fn(item, ctx)`` for each item as a Spark task, results in the items' order."""
        numbered = list(enumerate(items))
        if not numbered:
            return
        sc = self.spark.sparkContext
        shipped = sc.broadcast(ctx)
        try:
            results = (
                sc.parallelize(numbered, len(numbered))
                .map(lambda pair: (pair[0], fn(pair[1], shipped.value)))
                .collect()
            )
        finally:
            shipped.unpersist()
        for _, result in sorted(results, key=lambda pair: pair[0]):
            yield result


__all__ = [
    "JAVA_HINT",
    "LOCAL_MASTER",
    "SparkWorkers",
    "analyse",
    "arrow_schema",
    "enrich",
    "ingest",
    "java_missing",
    "session",
    "spark_schema",
]
