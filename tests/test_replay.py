"""What-if replay on hand-made days: the plan, a blanket shutdown, fail2ban's default jail, no action."""

from datetime import timedelta

import polars as pl
import pytest

from detector.config import Config
from detector.errors import InputError, SchemaError
from detector.recommend import ReplayResult, combine_results, replay
from detector.recommend.replay import _prepare, fail2ban_bans, fail2ban_refusals, plan_refusals, read_plan
from detector.schema import RECOMMENDATION_SCHEMA, C
from tests.recommend_frames import NOW, T0, ev, events


def plan(*rows):
    base = {
        "measure_id": "M1",
        "services": [],
        "allowed_networks": None,
        "wave": None,
        "expires_at": NOW + timedelta(days=1),
        C.RISK_SCORE: 0.9,
        "confidence": 0.9,
        "reason": "r",
        C.TECHNIQUES: [],
        "evidence": "{}",
        "collateral_accounts": 0,
        "collateral_practitioners": 0,
    }
    return pl.DataFrame([{**base, **r} for r in rows], schema=RECOMMENDATION_SCHEMA)


def block(target, target_type="ip", **kw):
    return {"action": "block", "target_type": target_type, "target": target, **kw}


def day(rows):
    return _prepare(events(rows))


NEXT = 24 * 60 + 60  # minutes after T0: inside the plan's validity


def refused(p, rows):
    return plan_refusals(p, day(rows)).get_column("refused").to_list()


@pytest.mark.parametrize(
    ("target", "kind", "ip", "hit"),
    [
        ("203.0.113.5", "ip", "203.0.113.5", True),
        ("203.0.113.5", "ip", "203.0.113.6", False),
        ("203.0.113.0/24", "cidr", "203.0.113.77", True),
        ("203.0.113.0/24", "cidr", "203.0.114.77", False),
        ("203.0.0.0/16", "cidr", "203.0.114.77", True),
        ("2001:db8:1:2::/64", "cidr", "2001:db8:1:2::99", True),
        ("2001:db8:1::/48", "cidr", "2001:db8:1:7::1", True),
        ("2001:db8:1::/48", "cidr", "2001:db8:2::1", False),
        ("AS64500", "asn", "192.0.2.1", True),
        ("AS64999", "asn", "192.0.2.1", False),
    ],
)
def test_block_matching(target, kind, ip, hit):
    assert refused(plan(block(target, kind)), [ev(ip, "u", minute=NEXT)]) == [hit]


def test_block_services_and_expiry():
    p = plan(block("203.0.113.5", services=["smtp", "submission"]))
    rows = [
        ev("203.0.113.5", "u", service="submission", minute=NEXT),
        ev("203.0.113.5", "u", service="imap", minute=NEXT),
        ev("203.0.113.5", "u", service="smtp", minute=3 * 24 * 60),  # after expires_at
    ]
    assert refused(p, rows) == [True, False, False]


def test_restrict_account_allows_only_its_networks():
    p = plan(
        {
            "action": "restrict_account",
            "target_type": "account",
            "target": "alice",
            "services": ["imap"],
            "allowed_networks": ["198.51.100.0/24", "AS64600"],
        }
    )
    rows = [
        ev("198.51.100.9", "alice", "success", minute=NEXT),  # own prefix
        ev("192.0.2.9", "alice", "success", asn=64600, minute=NEXT + 1),  # own AS
        ev("203.0.113.9", "alice", minute=NEXT + 2),  # elsewhere
        ev("203.0.113.9", "alice", service="pop3", minute=NEXT + 3),  # other service
        ev("203.0.113.9", "bob", minute=NEXT + 4),  # other account
    ]
    assert refused(p, rows) == [False, False, True, False, False]


def test_lock_and_reset():
    p = plan(
        {"action": "lock_account", "target_type": "account", "target": "mallory"},
        {"action": "reset_credentials", "target_type": "account", "target": "trudy", "expires_at": None},
    )
    result = plan_refusals(
        p,
        day(
            [
                ev("198.51.100.9", "mallory", "success", minute=NEXT),
                ev("203.0.113.1", "trudy", "success", minute=NEXT),
            ]
        ),
    )
    assert result.get_column("refused").to_list() == [True, False]
    assert result.get_column("reset").to_list() == [False, True]


def test_fail2ban_default_jail_on_a_hand_made_sequence():
    minutes = [0, 1, 2, 3, 4, 5, 15, 16]
    rows = [ev("203.0.113.9", "x", minute=m) for m in minutes]
    bans = fail2ban_bans(day(rows))
    assert bans.rows() == [("203.0.113.9", T0 + timedelta(minutes=4), T0 + timedelta(minutes=14))]
    # the 6th attempt (minute 5) is refused; 11 minutes after the ban started it is allowed again
    assert fail2ban_refusals(day(rows)).to_list() == [False] * 5 + [True, False, False]


def test_fail2ban_needs_five_failures_within_ten_minutes():
    rows = [ev("203.0.113.9", "x", minute=m) for m in (0, 3, 6, 9, 12, 14)]
    assert fail2ban_bans(day(rows)).is_empty()
    rows = [ev("203.0.113.9", "x", minute=m) for m in (0, 3, 6, 9, 10, 11)]
    assert fail2ban_bans(day(rows)).height == 1


def test_fail2ban_refused_attempts_do_not_count_and_bans_repeat():
    # 1 failure a minute for 40 minutes: banned at 4 (to 14), 18 (to 28), 32 (to 42)
    rows = [ev("203.0.113.9", "x", minute=m) for m in range(40)]
    starts = fail2ban_bans(day(rows)).get_column("start").to_list()
    assert starts == [T0 + timedelta(minutes=m) for m in (4, 18, 32)]


def test_fail2ban_is_per_source_and_ignores_successes():
    rows = [ev(f"203.0.113.{i % 5}", "x", minute=i) for i in range(20)]
    rows += [ev("198.51.100.1", "y", "success", minute=i) for i in range(10)]
    assert fail2ban_bans(day(rows)).is_empty()


def scenario():
    rows = [ev("203.0.113.5", f"u{i}", is_attack=True, minute=NEXT + i) for i in range(8)]
    rows += [ev("203.0.113.5", "u9", "success", is_attack=True, minute=NEXT + 20)]
    rows += [ev("198.51.100.9", "alice", "success", is_attack=False, minute=NEXT + 30)]
    rows += [ev("198.51.100.10", "doc", "success", practitioner=True, is_attack=False, minute=NEXT + 31)]
    return events(rows)


def test_replay_side_by_side_with_labels_column():
    p = plan(block("203.0.113.5"))
    result = replay(p, scenario(), None, Config())
    assert isinstance(result, ReplayResult) and result.truth == "labels"
    t = {r["strategy"]: r for r in result.table.iter_rows(named=True)}
    assert list(t) == ["plan", "shutdown", "fail2ban", "none"]
    assert (t["plan"]["attack_stopped"], t["plan"]["attack_attempts"]) == (9, 9)
    assert t["plan"]["attacker_logins_succeeding"] == 0 and t["plan"]["legit_refused"] == 0
    assert t["shutdown"]["legit_refused"] == 2 and t["shutdown"]["practitioner_refused"] == 1
    assert t["fail2ban"]["attack_stopped"] == 3  # banned at the 5th failure: the 6th to 8th refused
    assert t["none"]["attack_stopped"] == 0 and t["none"]["attacker_logins_pct"] == 100.0
    text = result.render()
    assert "fail2ban" in text and "truth: labels" in text


def test_combined_replays_sum_the_counts_and_recompute_the_shares():
    one = replay(plan(block("203.0.113.5")), scenario(), None, Config())
    other = replay(plan(), scenario(), None, Config())
    both = combine_results([one, other])
    assert both.table.get_column("strategy").to_list() == ["plan", "shutdown", "fail2ban", "none"]
    assert both.logins == one.logins + other.logins and both.truth == "labels"
    row = both.row("plan")
    assert (row["attack_stopped"], row["attack_attempts"]) == (9, 18)
    assert row["attack_stopped_pct"] == pytest.approx(50.0)
    assert both.row("shutdown")["legit_refused"] == 4
    assert combine_results([one]).table.equals(one.table)


def test_replays_judged_differently_are_not_combined():
    labelled = replay(plan(), scenario(), None, Config())
    own = replay(plan(), scenario().drop("is_attack"), None, Config())
    with pytest.raises(ValueError, match="labels"):
        combine_results([labelled, own])
    with pytest.raises(ValueError):
        combine_results([])


def test_replay_without_labels_says_so():
    day_ = scenario().drop("is_attack")
    result = replay(plan(block("203.0.113.5")), day_, None, Config())
    assert result.truth == "verdicts"
    assert "own verdicts" in result.render()
    assert result.row("plan")["attack_attempts"] == 8  # failures scored 0.9; the success scored 0.05


def test_shutdown_spares_private_and_allowlisted_networks():
    rows = [ev("10.0.0.5", "a", "success", is_attack=False), ev("192.0.2.5", "b", "success", is_attack=False)]
    rows += [ev("198.51.100.5", "c", "success", is_attack=False)]
    frame = events(rows).with_columns(pl.Series(C.IS_PRIVATE, [True, False, False]))
    result = replay(
        plan(block("203.0.113.5")), frame, None, Config().replace(plan={"allowlist": ("192.0.2.0/24",)})
    )
    assert result.row("shutdown")["legit_refused"] == 1


def test_read_plan_checks_the_contract(tmp_path):
    good = tmp_path / "plan.parquet"
    plan(block("203.0.113.5")).write_parquet(good)
    assert read_plan(good).height == 1
    bad = tmp_path / "bad.parquet"
    pl.DataFrame({"action": ["block"]}).write_parquet(bad)
    with pytest.raises(SchemaError, match="lacks column"):
        read_plan(bad)
    with pytest.raises(InputError):
        read_plan(tmp_path / "missing.parquet")


def test_block_exceptions_stay_allowed():
    p = plan(block("51.210.5.0/24", "cidr", allowed_networks=["51.210.5.114"]))
    rows = [ev("51.210.5.9", "u", minute=NEXT), ev("51.210.5.114", "alice", "success", minute=NEXT)]
    assert refused(p, rows) == [True, False]


def test_restrictions_do_not_apply_to_private_addresses():
    p = plan(
        {"action": "restrict_account", "target_type": "account", "target": "alice", "allowed_networks": []}
    )
    rows = [
        ev("10.20.0.11", "alice", "success", minute=NEXT),
        ev("93.184.216.34", "alice", "success", minute=NEXT),
    ]
    frame = events(rows).with_columns(pl.Series(C.IS_PRIVATE, [None, None], dtype=pl.Boolean))
    assert plan_refusals(p, _prepare(frame)).get_column("refused").to_list() == [False, True]


@pytest.mark.slow
def test_cli_replay_on_a_simulated_day(tmp_path):
    from typer.testing import CliRunner

    from detector.cli import app
    from detector.simulate import simulate

    world = tmp_path / "world"
    simulate(world, accounts=150, days=1, seed=5)
    plan_file = tmp_path / "plan.parquet"
    plan(block("AS1", "asn")).write_parquet(plan_file)
    day = next((world / "logs").iterdir())
    args = ["replay", "--plan", str(plan_file), str(day), "--geoip-dir", str(world / "geoip")]
    args += ["--practitioners", str(world / "practitioners.csv")]
    labelled = CliRunner().invoke(app, [*args, "--labels", str(world / "labels" / "incidents.csv")])
    assert labelled.exit_code == 0, labelled.output
    assert "truth: labels" in labelled.output and "fail2ban" in labelled.output
    own = CliRunner().invoke(app, args)
    assert own.exit_code == 0, own.output
    assert "own verdicts" in own.output


def test_replay_of_a_day_without_events_is_all_zero() -> None:
    from detector.schema import ENRICHED_SCHEMA

    empty = pl.DataFrame(schema=ENRICHED_SCHEMA).lazy()
    result = replay(pl.DataFrame(schema=RECOMMENDATION_SCHEMA), empty, None, Config())
    assert result.table.get_column("strategy").to_list() == ["plan", "shutdown", "fail2ban", "none"]
    assert result.table.get_column("attack_attempts").to_list() == [0, 0, 0, 0]
    assert result.table.get_column("legit_refused").to_list() == [0, 0, 0, 0]


def test_one_key_is_refused_while_any_of_its_rules_is_in_force():
    # the same address and account before and after the first block lapses; a second, longer one
    short, long_ = T0 + timedelta(minutes=10), T0 + timedelta(minutes=30)
    rows = [ev("203.0.113.5", "u", minute=m) for m in (5, 15, 35)]
    assert refused(plan(block("203.0.113.5", expires_at=short)), rows) == [True, False, False]
    both = plan(block("203.0.113.5", expires_at=short), block("203.0.113.0/24", "cidr", expires_at=long_))
    assert refused(both, rows) == [True, True, False]
    forever = plan(block("203.0.113.5", expires_at=short), block("AS64500", "asn", expires_at=None))
    assert refused(forever, rows) == [True, True, True]


def test_each_restriction_allows_only_its_own_accounts_networks():
    p = plan(
        {
            "action": "restrict_account",
            "target_type": "account",
            "target": "alice",
            "allowed_networks": ["198.51.100.0/24"],
        },
        {
            "action": "restrict_account",
            "target_type": "account",
            "target": "bob",
            "allowed_networks": ["192.0.2.0/24"],
        },
    )
    rows = [
        ev("198.51.100.9", "alice", "success", minute=NEXT),
        ev("198.51.100.9", "bob", "success", minute=NEXT),  # alice's network, not bob's
        ev("192.0.2.9", "alice", "success", minute=NEXT),
        ev("192.0.2.9", "bob", "success", minute=NEXT),
        ev("192.0.2.9", "Bob", "success", minute=NEXT),  # account names compare lower-cased
    ]
    assert refused(p, rows) == [False, True, True, False, False]


def test_equal_timestamps_keep_the_input_order():
    rows = [ev(f"203.0.113.{i}", "u", minute=NEXT) for i in range(6)]
    assert refused(plan(block("203.0.113.3")), rows) == [False, False, False, True, False, False]


def test_replay_reads_a_parquet_scan(tmp_path):
    path = tmp_path / "events.parquet"
    scenario().write_parquet(path)
    p = plan(block("203.0.113.5"))
    assert replay(p, pl.scan_parquet(path), None, Config()).table.equals(
        replay(p, scenario(), None, Config()).table
    )
