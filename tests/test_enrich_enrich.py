"""enrich(): every ENRICH column, one lookup per distinct address, warnings instead of failures."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from detector.config import EnrichConfig
from detector.enrich import enrich, find_databases, load_practitioners
from detector.enrich import geoip as geoip_module
from detector.enrich.geoip import DatabaseInfo, GeoIPDatabases
from detector.errors import EnrichmentError, SchemaError
from detector.schema import ENRICHED_SCHEMA, EVENT_SCHEMA, C, conform
from detector.simulate.geodb import NetworkInfo, write_geoip_databases

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
BUILT = int(datetime(2026, 2, 20, tzinfo=UTC).timestamp())
NETWORKS = [
    NetworkInfo("203.0.113.0/24", "FR", "Lyon", 45.75, 4.85, 64500, "Example Telecom"),
    NetworkInfo("198.51.100.0/24", "NL", None, 52.37, 4.9, 64501, "Example Hosting", is_hosting=True),
    NetworkInfo("2001:db8:1::/48", "FR", "Paris", 48.85, 2.35, 64502, "IPv6 ISP"),
]
ROWS = [
    ("login", "success", "Dr.Martin@example.fr", "203.0.113.5"),
    ("login", "success", "alice@example.fr", "203.0.113.5"),
    ("login", "failure", "bob@example.fr", "198.51.100.7"),
    ("login", "success", "carol@example.fr", "2001:db8:1:2::9"),
    ("login", "success", "dan@example.fr", "10.0.0.8"),
    ("logout", None, "alice@example.fr", "203.0.113.5"),
    ("login", "unknown", None, None),
]


def events() -> pl.LazyFrame:
    frame = pl.DataFrame(
        {
            C.TIMESTAMP: [T0.replace(minute=i) for i in range(len(ROWS))],
            C.ACTION: [r[0] for r in ROWS],
            C.OUTCOME: [r[1] for r in ROWS],
            C.ACCOUNT: [r[2] for r in ROWS],
            C.SOURCE_IP: [r[3] for r in ROWS],
        }
    )
    return conform(frame.lazy(), EVENT_SCHEMA)


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> GeoIPDatabases:
    d = tmp_path_factory.mktemp("geo")
    write_geoip_databases(d, NETWORKS, BUILT)
    return find_databases(d)


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    p = tmp_path_factory.mktemp("dir") / "practitioners.csv"
    p.write_text("account,profession,rpps\ndr.martin@example.fr,médecin,10001234567\n", encoding="utf-8")
    return load_practitioners(p)


def test_end_to_end(dbs: GeoIPDatabases, directory: pl.DataFrame) -> None:
    result = enrich(events(), geoip=dbs, practitioners=directory, cfg=EnrichConfig())
    assert isinstance(result.events, pl.LazyFrame)
    out = result.events.collect()
    assert out.schema == ENRICHED_SCHEMA
    assert out[C.ACCOUNT].to_list() == [r[2] for r in ROWS]  # order kept
    assert out[C.COUNTRY].to_list() == ["FR", "FR", "NL", "FR", None, "FR", None]
    assert out[C.CITY].to_list() == ["Lyon", "Lyon", None, "Paris", None, "Lyon", None]
    assert out[C.ASN].to_list() == [64500, 64500, 64501, 64502, None, 64500, None]
    assert out[C.IS_HOSTING].to_list() == [False, False, True, False, None, False, None]
    assert out[C.IS_PRIVATE].to_list() == [False, False, False, False, True, False, None]
    assert out[C.PREFIX].to_list() == [
        "203.0.113.0/24",
        "203.0.113.0/24",
        "198.51.100.0/24",
        "2001:db8:1:2::/64",
        "10.0.0.0/24",
        "203.0.113.0/24",
        None,
    ]
    assert out[C.PREFIX48].to_list() == [None, None, None, "2001:db8:1::/48", None, None, None]
    assert out[C.IS_PRACTITIONER].to_list() == [True, False, False, False, False, False, False]
    assert out[C.PROFESSION].to_list() == ["médecin", None, None, None, None, None, None]
    assert out[C.IP_LEGIT_ACCOUNTS].to_list() == [2, 2, 0, 1, 1, 2, None]
    assert result.warnings == []
    assert result.metadata["geoip"]["databases"]["city"]["build_date"] == "2026-02-20"
    assert result.metadata["addresses"]["distinct"] == 4
    assert result.metadata["addresses"]["private"] == 1
    assert result.metadata["practitioners"]["accounts"] == 1
    assert result.addresses.height == 4


def test_each_distinct_address_looked_up_once(dbs: GeoIPDatabases, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = geoip_module._lookup

    def counting(reader: object, ip: str, path: Path) -> object:
        calls.append(ip)
        return real(reader, ip, path)

    monkeypatch.setattr(geoip_module, "_lookup", counting)
    many = pl.concat([events()] * 50)
    enrich(many, geoip=GeoIPDatabases(city=dbs.city), practitioners=None, cfg=EnrichConfig())
    assert sorted(calls) == sorted(["203.0.113.5", "198.51.100.7", "2001:db8:1:2::9"])


def test_no_databases_is_one_warning_and_nulls() -> None:
    result = enrich(events(), geoip=None, practitioners=None)
    assert len(result.warnings) == 1 and "no GeoIP databases" in result.warnings[0]
    out = result.events.collect()
    assert out.schema == ENRICHED_SCHEMA
    for col in (
        C.COUNTRY,
        C.CITY,
        C.LATITUDE,
        C.LONGITUDE,
        C.ASN,
        C.AS_ORG,
        C.IS_HOSTING,
        C.IS_VPN,
        C.IS_TOR,
    ):
        assert out[col].null_count() == out.height, col
    assert out[C.PREFIX].null_count() == 1
    assert out[C.IS_PRACTITIONER].to_list() == [False] * len(ROWS)


def test_one_missing_database_one_warning(dbs: GeoIPDatabases) -> None:
    partial = GeoIPDatabases(city=dbs.city, asn=dbs.asn, searched=("/somewhere",))
    result = enrich(events(), geoip=partial, practitioners=None)
    assert len(result.warnings) == 1 and "Anonymous-IP" in result.warnings[0]
    out = result.events.collect()
    assert out[C.IS_VPN].null_count() == out.height
    assert out[C.COUNTRY][0] == "FR"


def test_corrupt_database_raises(tmp_path: Path) -> None:
    bad = tmp_path / "GeoLite2-City.mmdb"
    bad.write_bytes(b"garbage" * 100)
    broken = GeoIPDatabases(city=DatabaseInfo("city", bad, "GeoLite2-City", 0))
    with pytest.raises(EnrichmentError) as e:
        enrich(events(), geoip=broken, practitioners=None)
    assert e.value.path == str(bad)


def test_hosting_asns(dbs: GeoIPDatabases) -> None:
    result = enrich(events(), geoip=dbs, practitioners=None, cfg=EnrichConfig(hosting_asns=(64500,)))
    assert result.events.collect()[C.IS_HOSTING].to_list()[:3] == [True, True, True]


def test_history_shared_is_merged(dbs: GeoIPDatabases) -> None:
    first = enrich(events(), geoip=dbs, practitioners=None)
    history = first.shared.with_columns(pl.col("legit_accounts") * 10)
    second = enrich(events(), geoip=dbs, practitioners=None, history_shared=history)
    assert second.events.collect()[C.IP_LEGIT_ACCOUNTS].to_list()[:2] == [20, 20]
    assert second.metadata["shared"]["history_keys"] == history.height


def test_reenrichment_replaces_columns(dbs: GeoIPDatabases) -> None:
    once = enrich(events(), geoip=dbs, practitioners=None).events
    twice = enrich(once, geoip=dbs, practitioners=None).events.collect()
    assert twice.equals(once.collect())


def test_eager_input_and_extra_columns_kept(dbs: GeoIPDatabases) -> None:
    frame = events().collect().with_columns(pl.lit("x").alias("extra"))
    out = enrich(frame, geoip=dbs, practitioners=None).events.collect()
    assert "extra" in out.columns and out.columns.index("extra") < out.columns.index(C.COUNTRY)


def test_missing_column_is_schema_error() -> None:
    with pytest.raises(SchemaError, match="source_ip"):
        enrich(events().drop(C.SOURCE_IP), geoip=None, practitioners=None)


def test_raw_directory_frame_is_checked() -> None:
    with pytest.raises(EnrichmentError, match="account"):
        enrich(events(), geoip=None, practitioners=pl.DataFrame({"mail": ["a@x"]}))


def test_corrupt_search_tree_raises_naming_file(dbs: GeoIPDatabases, tmp_path: Path) -> None:
    assert dbs.city is not None
    data = bytearray(dbs.city.path.read_bytes())
    tree_end = data.index(b"\xab\xcd\xefMaxMind.com") // 2
    data[:tree_end] = b"\xff" * tree_end
    bad = tmp_path / "GeoLite2-City.mmdb"
    bad.write_bytes(bytes(data))
    found = find_databases(tmp_path)  # the metadata is intact
    with pytest.raises(EnrichmentError, match="corrupt") as e:
        enrich(events(), geoip=found, practitioners=None)
    assert e.value.path == str(bad)


def test_empty_events(dbs: GeoIPDatabases, directory: pl.DataFrame) -> None:
    result = enrich(pl.LazyFrame(schema=EVENT_SCHEMA), geoip=dbs, practitioners=directory)
    out = result.events.collect()
    assert out.height == 0 and out.schema == ENRICHED_SCHEMA
    assert result.metadata["addresses"]["distinct"] == 0


def test_stale_database_warns(tmp_path: Path) -> None:
    write_geoip_databases(tmp_path, NETWORKS, int(datetime(2025, 11, 1, tzinfo=UTC).timestamp()))
    result = enrich(events(), geoip=find_databases(tmp_path), practitioners=None)
    assert len(result.warnings) == 3
    assert all("2025-11-01" in w and "120 days" in w for w in result.warnings)
