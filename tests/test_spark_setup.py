"""The Spark engine's set-up without a JVM: missing Java or PySpark is bad usage (exit 2, one line),
and the Arrow schema Spark is told has no type Spark lacks."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from detector import spark as spark_engine
from detector.cli import app
from detector.errors import ConfigError


def test_no_java_is_a_config_error_naming_java(monkeypatch):
    monkeypatch.setattr(spark_engine, "java_missing", lambda: "no Java runtime found")
    with pytest.raises(ConfigError, match="Java") as caught:
        spark_engine.session("local[1]")
    assert "openjdk-17" in str(caught.value)


def test_run_with_spark_and_no_java_exits_2_with_one_line(monkeypatch, tmp_path):
    from tests.run_fixtures import write_night

    monkeypatch.setattr(spark_engine, "java_missing", lambda: "no Java runtime found")
    logs = write_night(tmp_path / "logs")
    args = [
        "run",
        str(logs),
        "--out",
        str(tmp_path / "out"),
        "--engine",
        "spark",
        "--spark-master",
        "local[1]",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()] if result.stderr_bytes else []
    assert any("Java" in ln for ln in lines)
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "summary.json").exists()


def test_an_unknown_engine_is_refused(tmp_path):
    result = CliRunner().invoke(app, ["run", str(tmp_path), "--out", str(tmp_path / "o"), "--engine", "dask"])
    assert result.exit_code == 2


@pytest.mark.parametrize(
    ("dtype", "want"),
    [
        (pl.String, pa.string()),
        (pl.UInt32, pa.int64()),
        (pl.UInt64, pa.int64()),
        (pl.Int32, pa.int32()),
        (pl.List(pl.String), pa.list_(pa.string())),
        (pl.List(pl.UInt64), pa.list_(pa.int64())),
        (pl.Datetime("us", "UTC"), pa.timestamp("us", tz="UTC")),
        (pl.Struct({"a": pl.UInt8, "b": pl.String}), pa.struct([("a", pa.int64()), ("b", pa.string())])),
    ],
)
def test_arrow_schema_has_only_types_spark_reads(dtype, want):
    assert spark_engine.arrow_schema({"c": dtype}).field("c").type == want


def test_batches_take_the_declared_schema():
    schema = spark_engine.arrow_schema({"b": pl.UInt32, "a": pl.String})
    frame = pl.DataFrame({"a": ["x", "y"], "b": [1, 2]}, schema={"a": pl.String, "b": pl.UInt32})
    (batch,) = spark_engine.to_batches(frame, schema)
    assert batch.schema == schema
    assert batch.column("b").to_pylist() == [1, 2]
