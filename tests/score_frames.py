"""Hand-made detection frames for the score tests (a stand-in for detector.detect output)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from detector.schema import ENRICHED_SCHEMA, C
from detector.score import Model
from detector.score import aggregates as agg

FEATURES = ("f_fail_rate", "f_new_net", C.BASELINE_SCORE)
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Det:
    events: pl.LazyFrame
    findings: pl.DataFrame | None = None
    campaigns: pl.DataFrame | None = None


def event(
    account: str | None,
    ip: str,
    outcome: str | None = "success",
    *,
    action: str = "login",
    minute: int = 0,
    detectors: tuple[str, ...] = (),
    techniques: tuple[str, ...] = (),
    campaign: str | None = None,
    asn: int = 3215,
    as_org: str = "Orange",
    country: str = "FR",
    hosting: bool = False,
    legit: int = 1,
    attempts: int = 1,
    baseline: float = 0.0,
    practitioner: bool = False,
    f_fail_rate: float = 0.0,
    f_new_net: float = 0.0,
    line: int = 1,
    source_file: str = "mail.log",
) -> dict:
    return {
        C.TIMESTAMP: T0 + timedelta(minutes=minute),
        C.ACTION: action,
        C.OUTCOME: outcome,
        C.ACCOUNT: account,
        C.SOURCE_IP: ip,
        C.ATTEMPTS: attempts,
        C.COUNTRY: country,
        C.ASN: asn,
        C.AS_ORG: as_org,
        C.IS_HOSTING: hosting,
        C.IS_VPN: False,
        C.IS_TOR: False,
        C.PREFIX: ip.rsplit(".", 1)[0] + ".0/24",
        C.IS_PRACTITIONER: practitioner,
        C.PROFESSION: "nurse" if practitioner else None,
        C.IP_LEGIT_ACCOUNTS: legit,
        C.BASELINE_SCORE: baseline,
        C.DETECTORS: list(detectors),
        C.TECHNIQUES: list(techniques),
        C.CAMPAIGN: campaign,
        C.SOURCE_FILE: source_file,
        C.LINE_NUMBER: line,
        "f_fail_rate": f_fail_rate,
        "f_new_net": f_new_net,
    }


def frame(rows: list[dict]) -> pl.DataFrame:
    schema = {
        **ENRICHED_SCHEMA,
        C.EVENT_ID: pl.UInt64,
        C.BASELINE_SCORE: pl.Float64,
        C.DETECTORS: pl.List(pl.String),
        C.TECHNIQUES: pl.List(pl.String),
        C.CAMPAIGN: pl.String,
        "f_fail_rate": pl.Float64,
        "f_new_net": pl.Float64,
    }
    df = pl.DataFrame(
        [{**r, C.EVENT_ID: i} for i, r in enumerate(rows)], schema_overrides=schema, strict=False
    )
    return df.select(
        [pl.col(n).cast(t) if n in df.columns else pl.lit(None, t).alias(n) for n, t in schema.items()]
    )


def detection(rows: list[dict]) -> Det:
    return Det(events=frame(rows).lazy())


def attack_world() -> list[dict]:
    """One stuffing source that breaks into 'victim', a user with a typo, and a quiet user."""
    rows = []
    for i in range(6):
        rows.append(
            event(
                f"u{i}",
                "198.51.100.7",
                "failure",
                minute=i,
                detectors=("credential_stuffing",),
                techniques=("T1110.004",),
                campaign="cs-1",
                asn=64500,
                as_org="HostCo",
                hosting=True,
                legit=0,
                f_fail_rate=1.0,
                line=10 + i,
            )
        )
    rows += [
        event(
            "victim",
            "198.51.100.7",
            "failure",
            minute=7,
            detectors=("credential_stuffing",),
            techniques=("T1110.004",),
            campaign="cs-1",
            asn=64500,
            as_org="HostCo",
            hosting=True,
            legit=0,
            attempts=3,
            f_fail_rate=1.0,
            line=20,
        ),
        event(
            "victim",
            "198.51.100.7",
            "success",
            minute=8,
            detectors=("suspicious_success",),
            techniques=("T1078",),
            campaign="cs-1",
            asn=64500,
            as_org="HostCo",
            hosting=True,
            legit=0,
            f_fail_rate=1.0,
            f_new_net=1.0,
            baseline=5.0,
            line=21,
        ),
        event("typo", "203.0.113.9", "failure", minute=9, detectors=("typo_then_success",), line=30),
        event("typo", "203.0.113.9", "success", minute=10, line=31),
        event("quiet", "203.0.113.10", "success", minute=11, line=40),
    ]
    return rows


def synthetic_world(seed: int = 0, accounts: int = 60) -> tuple[pl.DataFrame, set[str]]:
    """Labelled events: ordinary users, a stuffing source, brute force that breaks into some accounts."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    labels: list[bool] = []
    compromised: set[str] = set()
    for i in range(accounts):
        home = f"203.0.{i // 200}.{i % 200 + 1}"
        for k in range(int(rng.integers(2, 6))):
            rows.append(event(f"user{i}", home, "success", minute=k * 30, baseline=float(rng.random())))
            labels.append(False)
        if rng.random() < 0.1:
            rows.append(event(f"user{i}", home, "failure", minute=200, detectors=("typo_then_success",)))
            labels.append(False)
    for j in range(3):
        ip = f"198.51.100.{j + 1}"
        for i in range(0, accounts, 2):
            rows.append(
                event(
                    f"user{i}",
                    ip,
                    "failure",
                    minute=300 + i,
                    detectors=("credential_stuffing",),
                    campaign=f"cs-{j}",
                    asn=64500,
                    as_org="HostCo",
                    hosting=True,
                    legit=0,
                    f_fail_rate=float(0.8 + 0.2 * rng.random()),
                )
            )
            labels.append(True)
    for i in range(1, accounts, 7):
        ip = f"192.0.2.{i % 250 + 1}"
        for k in range(8):
            rows.append(
                event(
                    f"user{i}",
                    ip,
                    "failure",
                    minute=400 + k,
                    detectors=("brute_force",),
                    asn=64501,
                    as_org="BadNet",
                    hosting=True,
                    legit=0,
                    f_fail_rate=1.0,
                )
            )
            labels.append(True)
        rows.append(
            event(
                f"user{i}",
                ip,
                "success",
                minute=409,
                detectors=("suspicious_success",),
                asn=64501,
                as_org="BadNet",
                hosting=True,
                legit=0,
                f_fail_rate=0.9,
                f_new_net=1.0,
                baseline=6.0,
            )
        )
        labels.append(True)
        compromised.add(f"user{i}")
    df = frame(rows).with_columns(pl.Series("is_attack", labels))
    return df, compromised


class Column:
    """A stand-in estimator whose probability is one input column (clipped to [0, 1])."""

    def __init__(self, index: int) -> None:
        self.index = index

    def positive_proba(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x[:, self.index], 0, 1)


def stub_model() -> Model:
    names = agg.event_feature_names(FEATURES)
    acc = ("acc_risk_success_max", "acc_risk_max")
    src = ("src_risk_max",)
    return Model(
        event=Column(names.index("f_fail_rate")),
        account=Column(0),
        source=Column(0),
        event_features=names,
        account_features=acc,
        source_features=src,
        detector_names=("credential_stuffing", "suspicious_success", "typo_then_success"),
    )


class Const:
    """A model part that answers ``p`` for every row."""

    def __init__(self, p: float) -> None:
        self.p = p

    def positive_proba(self, x):
        return np.full(len(x), self.p)


def blind_accounts(source: float = 1.0) -> Model:
    """The stub model with an account model that calls every account clean (risk 0.01)."""
    import dataclasses

    return dataclasses.replace(stub_model(), account=Const(0.01), source=Const(source))
