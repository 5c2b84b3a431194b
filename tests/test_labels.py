"""Labels: reading and validating incidents files, and matching them to events."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from detector.errors import DetectorError, InputError, SchemaError
from detector.labels import (
    IS_ATTACK,
    LABEL_CAMPAIGN,
    LABEL_SCHEMA,
    LABEL_TECHNIQUE,
    LabelError,
    attack_sources,
    compromised_accounts,
    label_events,
    read_labels,
)
from detector.schema import C

HEADER = "campaign,technique,source_ip,account,start,end,compromised\n"
UTC = dt.UTC


def t(h: int, m: int = 0, s: int = 0, day: int = 16) -> dt.datetime:
    return dt.datetime(2026, 11, day, h, m, s, tzinfo=UTC)


def write(tmp_path: Path, body: str, name: str = "incidents.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + body)
    return path


@pytest.fixture
def labels(tmp_path: Path) -> pl.DataFrame:
    return read_labels(
        write(
            tmp_path,
            "CS-1,credential_stuffing,203.0.113.9,,2026-11-16T10:00:00Z,2026-11-16T12:00:00Z,false\n"
            "CS-1,credential_stuffing,185.213.0.10,alice@x.example,2026-11-16T10:00:00Z,2026-11-16T12:00:00Z,false\n"
            "CS-1,account_takeover,185.213.0.10,bob@x.example,2026-11-16T11:00:00Z,2026-11-16T11:30:00Z,true\n",
        )
    )


def events() -> pl.LazyFrame:
    """Six events: exclusive source in and out of its window, a shared exit with and without a labelled account."""
    return pl.LazyFrame(
        {
            C.TIMESTAMP: [t(10), t(12), t(12, 0, 1), t(11), t(11), t(11, 15)],
            C.SOURCE_IP: [
                "203.0.113.9",
                "203.0.113.9",
                "203.0.113.9",
                "185.213.0.10",
                "185.213.0.10",
                "185.213.0.10",
            ],
            C.ACCOUNT: [
                "zed@x.example",
                None,
                "zed@x.example",
                "ALICE@x.example",
                "carol@x.example",
                "bob@x.example",
            ],
        },
        schema_overrides={C.TIMESTAMP: pl.Datetime("us", "UTC")},
    )


def test_label_events_matches_exclusive_shared_and_window_edges(labels: pl.DataFrame) -> None:
    out = label_events(events(), labels).collect()
    assert out[IS_ATTACK].to_list() == [True, True, False, True, False, True]
    assert out[LABEL_TECHNIQUE].to_list() == [
        "credential_stuffing",
        "credential_stuffing",
        None,
        "credential_stuffing",
        None,
        "account_takeover",
    ]
    assert out[LABEL_CAMPAIGN].null_count() == 2
    assert out.columns[:3] == [C.TIMESTAMP, C.SOURCE_IP, C.ACCOUNT]


def test_label_events_keeps_rows_and_order_and_accepts_a_path(tmp_path: Path) -> None:
    path = write(tmp_path, "X,brute_force,,zed@x.example,,,\n")
    out = label_events(events(), path).collect()
    assert out.height == 6
    assert out[IS_ATTACK].to_list() == [True, False, True, False, False, False]


def test_most_specific_row_wins(tmp_path: Path) -> None:
    labels = read_labels(
        write(
            tmp_path,
            "A,password_spraying,185.213.0.10,,,,false\nB,account_takeover,185.213.0.10,bob@x.example,,,true\n",
        )
    )
    out = label_events(events(), labels).collect()
    assert out[LABEL_CAMPAIGN].to_list()[3:] == ["A", "A", "B"]


def test_label_events_on_an_empty_frame(labels: pl.DataFrame) -> None:
    out = label_events(events().head(0), labels).collect()
    assert out.height == 0
    assert out.schema[IS_ATTACK] == pl.Boolean


def test_label_events_needs_the_columns(labels: pl.DataFrame) -> None:
    with pytest.raises(SchemaError, match="source_ip"):
        label_events(events().drop(C.SOURCE_IP), labels)


def test_read_labels_normalises(tmp_path: Path) -> None:
    frame = read_labels(
        write(
            tmp_path,
            "C,brute_force,::ffff:192.0.2.1,Bob@X.example,2026-11-16 03:00:00,2026-11-16,TRUE\n"
            "C,brute_force,2001:DB8:0:0::1,,2026-11-16T04:00:00+01:00,,\n",
        )
    )
    assert frame.schema == LABEL_SCHEMA
    first, second = frame.rows(named=True)
    assert first[C.SOURCE_IP] == "192.0.2.1"
    assert first[C.ACCOUNT] == "bob@x.example"
    assert first["start"] == t(3)
    assert first["end"] == dt.datetime(2026, 11, 16, 23, 59, 59, 999999, tzinfo=UTC)
    assert first["compromised"] is True
    assert second[C.SOURCE_IP] == "2001:db8::1"
    assert second["start"] == t(3)
    assert second["end"] is None
    assert second["compromised"] is False


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("C,brute_force,192.0.2.1,,2026-13-45T00:00:00Z,,\n", 2, "start"),
        ("C,brute_force,192.0.2.1,,,yesterday,\n", 2, "end"),
        ("C,brute_force,192.0.2.1,,,,\nC,brute_forse,192.0.2.1,,,,\n", 3, "unknown technique"),
        ("C,brute_force,,,,,\n", 2, "source_ip, an account"),
        ("C,brute_force,192.0.2.999,,,,\n", 2, "not an IP"),
        (",brute_force,192.0.2.1,,,,\n", 2, "empty campaign"),
        ("C,brute_force,192.0.2.1,,,,maybe\n", 2, "compromised"),
        ("C,brute_force,192.0.2.1,,2026-11-17T00:00:00Z,2026-11-16T00:00:00Z,\n", 2, "after end"),
    ],
)
def test_read_labels_errors_point_at_the_line(tmp_path: Path, body: str, line: int, words: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(LabelError) as info:
        read_labels(path)
    assert info.value.line == line
    assert words in str(info.value)
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_unknown_technique_suggests_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(LabelError, match="did you mean brute_force"):
        read_labels(write(tmp_path, "C,brute_forse,192.0.2.1,,,,\n"))


def test_read_labels_missing_file_and_column(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        read_labels(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("campaign,technic,source_ip,account,start,end\nC,brute_force,192.0.2.1,,,\n")
    with pytest.raises(SchemaError, match="technique") as info:
        read_labels(bad)
    assert isinstance(info.value, DetectorError)
    assert info.value.hint == "did you mean technic?"


def test_compromised_column_is_optional(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("campaign,technique,source_ip,account,start,end\nC,brute_force,192.0.2.1,,,\n")
    assert read_labels(path)["compromised"].to_list() == [False]


def test_compromised_accounts_and_attack_sources(labels: pl.DataFrame) -> None:
    assert compromised_accounts(labels) == {"bob@x.example"}
    sources = attack_sources(labels)
    by_ip = {
        r[C.SOURCE_IP]: r
        for r in sources.filter(pl.col("technique") == "credential_stuffing").iter_rows(named=True)
    }
    assert by_ip["203.0.113.9"]["exclusive"] is True
    assert by_ip["185.213.0.10"]["exclusive"] is False
    assert by_ip["185.213.0.10"]["accounts"] == ["alice@x.example"]


def test_session_end_without_address_inherits_its_login_label(labels: pl.DataFrame) -> None:
    frame = pl.LazyFrame(
        {
            C.TIMESTAMP: [t(11), t(11, 20), t(11, 20)],
            C.HOST: ["imap1", "imap1", "imap2"],
            C.SESSION_ID: ["s1", "s1", "s1"],
            C.SOURCE_IP: ["185.213.0.10", None, None],
            C.ACCOUNT: ["bob@x.example", "bob@x.example", "bob@x.example"],
        },
        schema_overrides={C.TIMESTAMP: pl.Datetime("us", "UTC")},
    )
    out = label_events(frame, labels).collect()
    assert out[IS_ATTACK].to_list() == [True, True, False]
    assert out[LABEL_TECHNIQUE].to_list()[:2] == ["account_takeover", "account_takeover"]
