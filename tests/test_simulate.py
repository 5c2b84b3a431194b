"""The simulated world: reproducible bytes, every behaviour present, faithful lines, readable databases."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import geoip2.database
import polars as pl
import pytest
from typer.testing import CliRunner

from detector.cli import app
from detector.errors import InputError
from detector.labels import (
    IS_ATTACK,
    LABEL_TECHNIQUE,
    TECHNIQUES,
    attack_sources,
    compromised_accounts,
    label_events,
    read_labels,
)
from detector.schema import C
from detector.simulate import build_world, simulate
from detector.simulate import plan as world_plan

TINY = {"accounts": 60, "days": 2}
BENIGN = (
    "phone_cgnat",
    "phone_wifi",
    "desktop_home",
    "pop3_desktop",
    "webmail",
    "hospital_nat",
    "clinic_nat",
    "vpn_user",
    "ipv6_household",
    "traveller_abroad",
    "traveller_roaming",
    "moved",
    "typo",
    "stale_password",
    "smtp_send",
    "smtp_bulk_legit",
    "cloud_fetcher",
    "cloud_fetcher_stale",
)
ATTACKS = (
    "credential_stuffing",
    "password_spraying",
    "brute_force",
    "distributed_brute_force",
    "takeover_hosting",
    "takeover_vpn",
    "takeover_tor",
    "takeover_residential_same_city",
    "takeover_smtp_burst",
)


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "w"
    simulate(out, seed=11, **TINY)
    return out


def read_log(path: Path) -> list[str]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return data.decode("utf-8", "replace").splitlines()


def all_lines(world: Path, server: str) -> list[str]:
    return [line for p in sorted((world / "logs").rglob(f"{server}-*")) for line in read_log(p)]


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, world: Path) -> None:
    again = tmp_path / "again"
    simulate(again, seed=11, **TINY)
    assert digest(again) == digest(world)
    other = tmp_path / "other"
    simulate(other, seed=12, **TINY)
    assert digest(other)["labels/incidents.csv"] != digest(world)["labels/incidents.csv"]


def test_layout(world: Path) -> None:
    files = set(digest(world))
    for day in ("2026-11-16", "2026-11-17"):
        assert f"logs/{day}/imap2-mail.log.gz" in files
    assert "logs/2026-11-17/imap1-mail.log" in files
    assert "logs/2026-11-16/imap1-mail.log.gz" in files
    for name in ("GeoLite2-City.mmdb", "GeoLite2-ASN.mmdb", "GeoIP2-Anonymous-IP.mmdb", "address-plan.csv"):
        assert f"geoip/{name}" in files
    assert {"practitioners.csv", "labels/incidents.csv", "manifest.json"} <= files


@pytest.mark.parametrize("behaviour", BENIGN + ATTACKS)
def test_every_behaviour_is_present(world: Path, behaviour: str) -> None:
    manifest = json.loads((world / "manifest.json").read_text())
    assert manifest["behaviours"][behaviour]["sessions"] > 0


def test_manifest_records_parameters(world: Path) -> None:
    manifest = json.loads((world / "manifest.json").read_text())
    assert manifest["seed"] == 11
    assert manifest["parameters"]["accounts"] == 60
    assert manifest["generator_version"]
    days = manifest["campaigns"]["CS-1"]["per_day"]
    assert len(days) == 2 and 0 < days[1]["new_sources"] < days[1]["sources"]


def test_labels_cover_every_technique_and_follow_the_rules(world: Path) -> None:
    labels = read_labels(world / "labels" / "incidents.csv")
    assert set(labels["technique"]) == set(TECHNIQUES)
    takeover = labels.filter(pl.col("technique") == "account_takeover")
    assert takeover["compromised"].all() and takeover["account"].null_count() == 0
    assert not labels.filter(pl.col("technique") != "account_takeover")["compromised"].any()
    compromised = compromised_accounts(labels)
    assert len(compromised) >= 3
    manifest = json.loads((world / "manifest.json").read_text())
    assert compromised == {c["account"] for c in manifest["compromises"]}
    sources = attack_sources(labels)
    # Shared exits (VPN, CGNAT) are labelled per account, attacker-own addresses without one.
    assert sources["exclusive"].any() and not sources["exclusive"].all()


def test_labels_mark_exactly_the_attack_sessions(world: Path) -> None:
    """Every attack login and session end matches a label row; no legitimate one does."""
    w = build_world(seed=11, **TINY)
    labels = read_labels(world / "labels" / "incidents.csv")
    ends = pl.col("ts") + pl.col("duration")
    events = pl.concat(
        [
            w.sessions.select(stamp.alias("_us"), "ip", "account", "campaign", "technique", "compromised")
            for stamp in (pl.col("ts"), ends)
        ]
    ).select(
        pl.col("_us").cast(pl.Datetime("us", "UTC")).alias(C.TIMESTAMP),
        pl.col("ip").alias(C.SOURCE_IP),
        pl.col("account").alias(C.ACCOUNT),
        pl.col("campaign").is_not_null().alias("truth"),
        pl.when(pl.col("compromised")).then(pl.lit("account_takeover")).otherwise("technique").alias("want"),
    )
    out = label_events(events.lazy(), labels).collect()
    assert out.filter(pl.col(IS_ATTACK) != pl.col("truth")).height == 0
    attack = out.filter("truth")
    assert (attack[LABEL_TECHNIQUE] == attack["want"]).all()


LINE_SHAPES = {
    "imap1": [
        r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d imap1 dovecot\[\d+\]: (imap|pop3)-login: Login: user=<[^>]+>, method=(PLAIN|LOGIN), rip=[0-9a-f.:]+, lip=[\d.]+, mpid=\d+, (TLS|secured), session=<[A-Za-z0-9+/]{16}>$",
        r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d imap1 dovecot\[\d+\]: auth: passwd-file\([^,]+,[0-9a-f.:]+,<[A-Za-z0-9+/]{16}>\): (Password mismatch|unknown user)$",
        r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d imap1 dovecot\[\d+\]: (imap|pop3)-login: Disconnected(: Connection closed)? \(auth failed, \d+ attempts in \d+ secs\): user=<[^>]+>, method=\w+, rip=[0-9a-f.:]+, lip=[\d.]+, TLS(: Connection closed)?, session=<[A-Za-z0-9+/]{16}>$",
        r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d imap1 dovecot\[\d+\]: imap\([^)]+\)<\d+><[A-Za-z0-9+/]{16}>: Disconnected(: Logged out| for inactivity) in=\d+ out=\d+ deleted=0 expunged=0 trashed=0 hdr_count=\d+ hdr_bytes=\d+ body_count=\d+ body_bytes=\d+$",
        r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d imap1 dovecot\[\d+\]: pop3\([^)]+\)<\d+><[A-Za-z0-9+/]{16}>: Disconnected: Logged out top=0/0, retr=\d+/\d+, del=0/\d+, size=\d+$",
    ],
    "imap2": [
        r"^2026-11-1\dT\d\d:\d\d:\d\d\.\d{6}\+01:00 imap2 dovecot\[\d+\]: auth-worker\(\d+\): sql\([^,]+,[0-9a-f.:]+,<[A-Za-z0-9+/]{16}>\): (Password mismatch|unknown user) \(SHA1 of given password: [0-9a-f]{6}\)$",
        r"^2026-11-1\dT\d\d:\d\d:\d\d\.\d{6}\+01:00 imap2 dovecot\[\d+\]: (imap|pop3)-login: Login: user=<[^>]+>, method=\w+, rip=[0-9a-f.:]+, lip=[\d.]+, mpid=\d+, (TLS|secured), session=<[A-Za-z0-9+/]{16}>$",
    ],
    "smtp1": [
        r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d smtp1 postfix/submission/smtpd\[\d+\]: connect from [\w.-]+\[[0-9a-f.:]+\]$",
        r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d smtp1 postfix/submission/smtpd\[\d+\]: [0-9A-F]{10}: client=[\w.-]+\[[0-9a-f.:]+\], sasl_method=(PLAIN|LOGIN), sasl_username=\S+$",
        r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d smtp1 postfix/qmgr\[\d+\]: [0-9A-F]{10}: from=<[^>]+>, size=\d+, nrcpt=\d+ \(queue active\)$",
        r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d smtp1 postfix/submission/smtpd\[\d+\]: warning: unknown\[[0-9a-f.:]+\]: SASL LOGIN authentication failed: UGFzc3dvcmQ6$",
        r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d smtp1 dovecot\[\d+\]: auth: passwd-file\([^,]+,[0-9a-f.:]+\): (Password mismatch|unknown user) \(SHA1 of given password: [0-9a-f]{6}\)$",
        r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d smtp1 postfix/submission/smtpd\[\d+\]: disconnect from [\w.-]+\[[0-9a-f.:]+\]( ehlo=\d( starttls=1)?) auth=(1|0/1) .*commands=\d+(/\d+)?$",
    ],
}


@pytest.mark.parametrize(("server", "shape"), [(s, p) for s, ps in LINE_SHAPES.items() for p in ps])
def test_each_line_kind_is_written_as_the_daemon_writes_it(world: Path, server: str, shape: str) -> None:
    pattern = re.compile(shape)
    assert any(pattern.match(line) for line in all_lines(world, server))


def test_spraying_shows_one_password_hash_across_accounts(world: Path) -> None:
    labels = read_labels(world / "labels" / "incidents.csv")
    spray_ips = set(labels.filter(pl.col("technique") == "password_spraying")["source_ip"])
    hashes: dict[str, set[str]] = {}
    for line in all_lines(world, "imap2"):
        m = re.search(r"sql\(([^,]+),([^,]+),.*given password: (\w+)\)", line)
        if m and m.group(2) in spray_ips and line[:10] == "2026-11-16":
            hashes.setdefault(m.group(3), set()).add(m.group(1))
    assert max(len(v) for v in hashes.values()) >= 10


def test_noise_truncated_and_junk_lines(world: Path) -> None:
    first = world / "logs" / "2026-11-16"
    smtp = gzip.decompress((first / "smtp1-mail.log.gz").read_bytes())
    assert b"\x00\x00\x00" in smtp
    imap1 = read_log(first / "imap1-mail.log.gz")
    assert any("starting up" in line for line in imap1)
    assert any(not re.search(r"(>|\d|\)|INBOX|disabled\))$", line) for line in imap1)


def test_practitioner_directory(world: Path) -> None:
    directory = pl.read_csv(world / "practitioners.csv", infer_schema=False)
    assert directory.columns == ["account", "profession", "rpps", "organization"]
    assert directory["rpps"].str.contains(r"^\d{11}$").all()
    assert (
        directory["profession"]
        .is_in(
            [
                "médecin",
                "infirmier",
                "pharmacien",
                "sage-femme",
                "chirurgien-dentiste",
                "masseur-kinésithérapeute",
                "opticien-lunetier",
                "audioprothésiste",
                "orthophoniste",
                "pédicure-podologue",
                "ergothérapeute",
            ]
        )
        .all()
    )


def test_geoip_databases_give_the_planned_answers(world: Path) -> None:
    geo = world / "geoip"
    with (
        geoip2.database.Reader(str(geo / "GeoLite2-City.mmdb")) as city,
        geoip2.database.Reader(str(geo / "GeoLite2-ASN.mmdb")) as asn,
        geoip2.database.Reader(str(geo / "GeoIP2-Anonymous-IP.mmdb")) as anon,
    ):
        home = f"{world_plan.ISPS[0].v4_base.rsplit('.', 2)[0]}.0.9"
        assert city.city(home).city.name == world_plan.DOMESTIC_CITIES[0].name
        assert asn.asn(home).autonomous_system_number == world_plan.ISPS[0].asn
        assert asn.asn("37.160.1.2").autonomous_system_organization == world_plan.CARRIERS[0].name
        assert anon.anonymous_ip("185.213.0.10").is_anonymous_vpn
        assert anon.anonymous_ip("45.140.3.7").is_hosting_provider
        assert anon.anonymous_ip("185.220.96.3").is_tor_exit_node
        assert city.city("2a0e:4c80:1ab:1234::1").country.iso_code == "FR"


def test_cli_simulate_tiny_world(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--out",
            str(out),
            "--accounts",
            "50",
            "--days",
            "1",
            "--seed",
            "3",
            "--start",
            "2026-03-02",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "50 accounts" in result.output
    assert (out / "logs" / "2026-03-02" / "imap1-mail.log").is_file()
    bad = CliRunner().invoke(app, ["simulate", "--out", str(out), "--accounts", "5"])
    assert bad.exit_code == 2
    assert "--accounts" in bad.output


def test_bad_parameters_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        simulate(tmp_path, accounts=100, days=0)
    with pytest.raises(InputError):
        simulate(tmp_path, accounts=100, practitioner_share=1.5)


DOCS = Path(__file__).resolve().parents[1] / "docs"
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


@pytest.mark.parametrize("behaviour", BENIGN + ATTACKS)
def test_every_behaviour_is_documented(behaviour: str) -> None:
    assert f"`{behaviour}`" in (DOCS / "simulate.md").read_text()


def test_every_option_and_technique_is_documented() -> None:
    text = (DOCS / "simulate.md").read_text()
    for option in ("--out", "--accounts", "--days", "--seed", "--practitioner-share", "--start"):
        assert f"`{option}`" in text
    labels_doc = (DOCS / "labels.md").read_text()
    for technique in TECHNIQUES:
        assert f"`{technique}`" in labels_doc


@pytest.mark.slow
def test_data_samples_are_what_make_samples_writes(tmp_path: Path) -> None:
    """data/samples is regenerated by `make samples`; a generator change must come with new samples."""
    out = tmp_path / "samples"
    simulate(out, accounts=3000, days=3, seed=7)
    assert digest(out) == digest(SAMPLES)


def test_leftovers_of_an_earlier_world_are_reported(tmp_path: Path) -> None:
    (tmp_path / "logs" / "2026-11-30").mkdir(parents=True)
    result = simulate(tmp_path, accounts=50, days=1, seed=2)
    assert any("2026-11-30" in w for w in result.warnings)
    assert "warning: " in result.summary_text()


def test_legit_behaviours_list_the_look_alike_accounts(world: Path) -> None:
    table = pl.read_csv(world / "labels" / "legit-behaviours.csv")
    assert table.columns == ["account", "behaviour", "sessions", "sources"]
    assert set(BENIGN) <= set(table["behaviour"])
    labels = read_labels(world / "labels" / "incidents.csv")
    stale = set(table.filter(pl.col("behaviour") == "stale_password")["account"])
    assert stale and not stale & compromised_accounts(labels)
