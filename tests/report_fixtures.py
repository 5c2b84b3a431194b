"""Tiny report tables for the report tests (no pipeline run needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from detector import schema
from detector.report import RunData, contract
from detector.schema import C

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def table(name: str, rows: list[dict]) -> pl.DataFrame:
    cols = contract.BY_NAME[name].schema()
    return schema.conform(
        pl.DataFrame(rows, infer_schema_length=None).lazy() if rows else pl.LazyFrame(), cols
    ).collect()


def events(n: int = 120) -> pl.LazyFrame:
    rows = [
        {
            C.TIMESTAMP: T0 + timedelta(minutes=11 * i),
            C.ACTION: "login",
            C.OUTCOME: "success" if i % 4 == 0 else ("unknown_user" if i % 3 else "failure"),
            C.ACCOUNT: f"user{i % 15}@example.org",
            C.SOURCE_IP: f"203.0.113.{i % 9}",
            C.ATTEMPTS: 1,
            C.CAMPAIGN: None if i % 4 == 0 else f"cs-{i % 2}",
        }
        for i in range(n)
    ]
    return schema.conform(pl.DataFrame(rows).lazy(), contract.BY_NAME["events.parquet"].schema())


def run_data(n_compromised: int = 12, n_targeted: int = 30, **kw) -> RunData:
    accounts = [
        {
            C.ACCOUNT: f"user{i}@example.org",
            C.IS_PRACTITIONER: i % 3 == 0,
            C.PROFESSION: "nurse" if i % 3 == 0 else None,
            C.RISK_SCORE: 0.9 - i * 0.001,
            "verdict": "compromised"
            if i < n_compromised
            else ("targeted" if i < n_compromised + n_targeted else "clean"),
            "reasons": [f"success for user{i}@example.org after 40 failures", "new country"],
            C.TECHNIQUES: ["T1110.004"],
            "attempts": 40,
        }
        for i in range(n_compromised + n_targeted + 5)
    ]
    sources = [
        {
            C.SOURCE_IP: f"203.0.113.{i}",
            C.COUNTRY: ["NL", "US", "CN"][i % 3],
            C.ASN: 64500 + i % 4,
            C.AS_ORG: f"Org {i % 4}",
            "verdict": "malicious" if i % 2 else "benign",
            "attempts": 10 * i,
            "shared_address": i == 0,
        }
        for i in range(9)
    ]
    plan = [
        {
            "measure_id": "M1",
            "action": "block",
            "target_type": "cidr",
            "target": "203.0.113.0/24",
            C.RISK_SCORE: 0.99,
            "reason": "campaign cs-1",
            "collateral_accounts": 0,
            "collateral_practitioners": 0,
        },
        {
            "measure_id": "M2",
            "action": "reset_credentials",
            "target_type": "account",
            "target": "user1@example.org",
            C.RISK_SCORE: 0.9,
            "reason": "user1@example.org logged in from the campaign",
            "collateral_accounts": 1,
            "collateral_practitioners": 0,
        },
        {
            "measure_id": "M3",
            "action": "reopen",
            "target_type": "account",
            "target": "user3@example.org",
            "wave": 1,
            C.RISK_SCORE: 0.01,
            "collateral_accounts": 0,
            "collateral_practitioners": 0,
        },
        {
            "measure_id": "M4",
            "action": "reopen",
            "target_type": "account",
            "target": "user4@example.org",
            "wave": 2,
            C.RISK_SCORE: 0.02,
            "collateral_accounts": 0,
            "collateral_practitioners": 0,
        },
    ]
    campaigns = [
        {
            "campaign": f"cs-{i}",
            "technique": "T1110.004",
            "n_sources": 5 + i,
            "accounts_targeted": 30 - i,
            "start": T0,
            "end": T0 + timedelta(hours=20),
        }
        for i in range(6)
    ]
    findings = [
        {
            "finding_id": "F1",
            "detector": "brute_force",
            "entity_type": "account",
            "entity": "user1@example.org",
            "evidence": '{"account": "user1@example.org", "failures": 40}',
        },
        {"finding_id": "F2", "detector": "spraying", "entity_type": "source_ip", "entity": "203.0.113.1"},
    ]
    quarantine = [
        {C.SOURCE_FILE: "mail.log", C.LINE_NUMBER: 7, "reason": "unparsed", C.RAW: "user1@example.org ???"}
    ]
    from detector.recommend.replay import TABLE_SCHEMA, ReplayResult

    counts = {  # strategy: attack attempts stopped, attacker logins succeeding, legit refused, practitioners refused
        "plan": (970, 0, 3, 0),
        "shutdown": (1000, 0, 25000, 9000),
        "fail2ban": (310, 12, 10, 2),
        "none": (0, 40, 0, 0),
    }
    rows = [
        {
            "strategy": k,
            "attack_attempts": 1000,
            "attack_stopped": a,
            "attack_stopped_pct": a / 10,
            "attacker_logins": 40,
            "attacker_logins_succeeding": b,
            "attacker_logins_pct": b / 0.4,
            "legit_logins": 50000,
            "legit_refused": c,
            "legit_refused_pct": c / 500,
            "practitioner_logins": 20000,
            "practitioner_refused": d,
            "practitioner_refused_pct": d / 200,
        }
        for k, (a, b, c, d) in counts.items()
    ]
    replay = ReplayResult(table=pl.DataFrame(rows, schema=TABLE_SCHEMA), truth="verdicts", logins=51000)
    meta = {
        contract.Meta.RUN_ID: "20250302T010000Z-abcdef12",
        contract.Meta.TOOL_VERSION: "0.1.0",
        contract.Meta.CREATED_AT: "2025-03-02T01:00:00+00:00",
        contract.Meta.WINDOW_START: T0.isoformat(),
        contract.Meta.WINDOW_END: (T0 + timedelta(hours=23)).isoformat(),
        contract.Meta.INPUTS: [{"path": "mail.log", "size": 100, "sha256": "ab" * 32}],
        contract.Meta.MODEL_ID: "default",
        contract.Meta.CONFIG_SHA256: "0123456789abcdef",
        contract.Meta.PSEUDONYMIZED: "false",
    }
    return RunData(
        meta=meta,
        events=events(),
        tables={
            "accounts.parquet": table("accounts.parquet", accounts),
            "sources.parquet": table("sources.parquet", sources),
            "recommendations.parquet": table("recommendations.parquet", plan),
            "collateral.parquet": table(
                "collateral.parquet",
                [
                    {
                        "measure_id": "M2",
                        "action": "reset_credentials",
                        "target_type": "account",
                        "target": "user1@example.org",
                        C.ACCOUNT: "user1@example.org",
                        C.IS_PRACTITIONER: False,
                    }
                ],
            ),
            "findings.parquet": table("findings.parquet", findings),
            "campaigns.parquet": table("campaigns.parquet", campaigns),
            "quarantine.parquet": table("quarantine.parquet", quarantine),
        },
        lines_read=130,
        noise={"startup": 3},
        replay=replay,
        warnings=("no GeoIP databases found", "second warning", "third warning"),
        **kw,
    )
