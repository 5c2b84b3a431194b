import json
from html.parser import HTMLParser

import polars as pl
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from detector.parquet_meta import read_metadata
from detector.report import contract, write_reports
from detector.report.html import hbars, render_html, stacked_bars
from detector.report.parquet import write_parquet
from detector.report.pseudonymize import PREFIX, Pseudonymizer, pseudonym
from detector.report.summary import bucket_for, build_summary, print_summary, replay_rows
from detector.schema import C
from tests.report_fixtures import T0, run_data


@pytest.mark.parametrize("lazy", [False, True])
def test_parquet_metadata_visible_to_pyarrow_and_polars(tmp_path, lazy):
    df = pl.DataFrame({"a": ["x", "y"], "l": [["p"], []], "t": [T0, T0]})
    path = tmp_path / "t.parquet"
    rows = write_parquet(df.lazy() if lazy else df, path, {"run_id": "r1", "inputs": [{"sha256": "ab"}]})
    assert rows == 2
    assert pq.read_schema(path).metadata[b"detector.run_id"] == b"r1"
    assert pl.read_parquet_metadata(path)["detector.run_id"] == "r1"
    assert read_metadata(path) == {"run_id": "r1", "inputs": [{"sha256": "ab"}]}
    assert pl.read_parquet(path).equals(df)


def test_pseudonym_is_stable_keyed_and_prefixed():
    a = pseudonym("k1", "alice@example.org")
    assert a == pseudonym("k1", "alice@example.org")
    assert a != pseudonym("k2", "alice@example.org")
    assert a != pseudonym("k1", "bob@example.org")
    assert a.startswith(PREFIX) and len(a) == len(PREFIX) + 16


def test_pseudonymizer_columns_and_text():
    p = Pseudonymizer("key")
    df = pl.DataFrame({"account": ["alice@example.org", None, "bob@example.org"]})
    out = df.select(p.column("account"))["account"].to_list()
    assert out == [pseudonym("key", "alice@example.org"), None, pseudonym("key", "bob@example.org")]
    text = pl.DataFrame({"r": ["bob@example.org failed, then alice@example.org"]})
    got = text.select(p.text(pl.col("r")))["r"][0]
    assert "example.org" not in got and pseudonym("key", "bob@example.org") in got


def test_pseudonymizer_refuses_empty_key():
    with pytest.raises(ValueError):
        Pseudonymizer("")


@pytest.mark.parametrize(
    ("hours", "want"),
    [(0.5, "5m"), (3, "5m"), (10, "15m"), (24, "15m"), (30, "1h"), (72, "1h"), (24 * 20, "6h")],
)
def test_bucket_for(hours, want):
    from datetime import timedelta

    assert bucket_for(T0, T0 + timedelta(hours=hours)) == want


def test_replay_rows_accepts_frames_dicts_and_none():
    assert replay_rows(None) is None
    assert replay_rows(pl.DataFrame({"strategy": ["plan"], "stopped": [0.9]})) == [
        {"strategy": "plan", "stopped": 0.9}
    ]
    assert replay_rows({"plan": {"stopped": 0.9}}) == [{"strategy": "plan", "stopped": 0.9}]


def test_summary_content():
    s = build_summary(run_data())
    assert s["night"]["events"] == 120 and s["night"]["lines"] == 130 and s["night"]["quarantined"] == 1
    assert s["accounts"]["compromised_total"] == 12 and s["accounts"]["targeted_total"] == 30
    first = s["accounts"]["compromised"][0]
    assert first["is_practitioner"], "practitioners first"
    assert s["plan"]["by_action"] == {"reopen": 2, "block": 1, "reset_credentials": 1}
    assert [w["wave"] for w in s["charts"]["waves"]] == [1, 2]
    assert len(s["replay"]["strategies"]) == 4
    assert s["replay"]["view"][1]["strategy"] == "blanket shutdown"
    assert s["replay"]["view"][0]["attacks stopped"] == "97.0% (970/1,000)"
    json.dumps(s)  # serialisable


@pytest.mark.parametrize("width", [80, 100, 160])
def test_terminal_summary_fits_one_screen(width):
    s = build_summary(
        run_data(n_compromised=200, n_targeted=500, fail_on="compromised", attention="200 compromised")
    )
    console = Console(width=width, record=True, force_terminal=False)
    print_summary(s, console)
    text = console.export_text()
    assert len(text.splitlines()) <= 45, text
    for needle in (
        "Night:",
        "Campaigns:",
        "Compromised accounts: 200",
        "Targeted accounts: 500",
        "Plan:",
        "fail2ban",
    ):
        assert needle in text


class _Sections(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.svgs = 0
        self.remote: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        self.svgs += tag == "svg"
        self.scripts += tag == "script"
        for key in ("src", "href"):
            if a.get(key, "").startswith(("http:", "https:", "//")):
                self.remote.append(a[key])


def test_html_report_sections_and_self_contained():
    html = render_html(build_summary(run_data()))
    p = _Sections()
    p.feed(html)
    for section in ("overview", "night", "campaigns", "origins", "accounts", "plan", "replay"):
        assert section in p.ids
    for chart in ("chart-attempts", "chart-campaigns", "chart-countries", "chart-asns", "chart-waves"):
        assert chart in p.ids
    assert p.svgs >= 5 and p.remote == [] and p.scripts == 0
    assert "user0@example.org" in html and "blanket shutdown" in html


def test_html_escapes_account_names():
    data = run_data()
    acc = data.tables["accounts.parquet"].with_columns(pl.lit("<script>x</script>").alias("account"))
    tables = {**data.tables, "accounts.parquet": acc}
    html = render_html(build_summary(type(data)(**{**data.__dict__, "tables": tables})))
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_charts_empty_and_filled():
    assert "No data" in stacked_bars([], x="t", series="s", value="n", title="t")
    svg = stacked_bars(
        [{"t": "2025-03-01T00:00:00+00:00", "s": "failure", "n": 3}], x="t", series="s", value="n", title="x"
    )
    assert svg.startswith("<svg") and "<rect" in svg
    assert hbars([("NL", 3.0), ("US", 1.0)], title="c").count("<rect") == 2


def test_write_reports_writes_every_file_with_metadata(tmp_path):
    data = run_data()
    write_parquet(data.events, tmp_path / "events.parquet", {**data.meta, "report": "events.parquet"})
    summary = write_reports(data, tmp_path)
    for name in contract.ALL_FILES:
        assert (tmp_path / name).exists(), name
    for r in contract.PARQUET_REPORTS:
        meta = read_metadata(tmp_path / r.name)
        assert meta["run_id"] == data.meta["run_id"] and meta["report"] == r.name
        assert pl.read_parquet_schema(tmp_path / r.name) == dict(r.schema())
    assert json.loads((tmp_path / "summary.json").read_text())["run"]["run_id"] == summary["run"]["run_id"]


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        ("compromised", ["p-risky", "p-hit", "risky", "hit"]),
        ("targeted", ["p-hit", "p-risky", "hit", "risky"]),
    ],
)
def test_account_lists_rank_practitioners_first_then_risk_or_failures(verdict, expected):
    from detector.report.summary import _account_list

    accounts = pl.DataFrame(
        {
            C.ACCOUNT: ["risky", "hit", "p-risky", "p-hit"],
            C.IS_PRACTITIONER: [False, False, True, True],
            C.PROFESSION: [None, None, "nurse", "nurse"],
            C.RISK_SCORE: [0.9, 0.1, 0.9, 0.1],
            "failures": [2, 600, 2, 600],
            "reasons": [["x"]] * 4,
            C.TECHNIQUES: [["T1110"]] * 4,
            "verdict": [verdict] * 4,
        }
    )
    n, rows = _account_list(accounts, verdict)
    assert n == 4 and [r[C.ACCOUNT] for r in rows] == expected


def test_targeted_accounts_are_shown_without_a_risk_figure():
    from detector.report.summary import _acct_line

    a = {
        C.ACCOUNT: "ann@x",
        C.IS_PRACTITIONER: True,
        C.PROFESSION: "nurse",
        C.RISK_SCORE: 0.01,
        "reasons": ["663 failed"],
    }
    assert _acct_line(a) == "  0.01  ann@x [nurse]  663 failed"
    assert _acct_line(a, risk=False) == "  ann@x [nurse]  663 failed"
