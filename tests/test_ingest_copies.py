"""Log content read twice counts once: the same file under two names, the same line in mail.log and
mail.warn (Debian's rsyslog writes warnings to both)."""

from __future__ import annotations

import gzip
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_helpers import write_log

from detector.config import IngestConfig
from detector.ingest import ingest

SASL = "Nov 23 03:14:{s:02d} mx postfix/submission/smtpd[{pid}]: warning: unknown[{ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
AUTH = "Nov 23 03:14:{s:02d} mx dovecot: auth: passwd-file(alice@example.org,{ip}): Password mismatch"
IMAP_OK = "Nov 23 03:14:{s:02d} mx dovecot: imap-login: Login: user=<bob@example.org>, method=PLAIN, rip=192.0.2.10, lip=192.0.2.1, mpid=77, TLS, session=<abc{s}>"


def sasl(s: int, ip: str = "203.0.113.9", pid: int = 2001) -> str:
    return SASL.format(s=s, ip=ip, pid=pid)


def _ingest(tmp_path, files: dict[str, list[str]]):
    paths = [str(write_log(tmp_path / name, lines)) for name, lines in files.items()]
    result = ingest(paths, IngestConfig(year=2026), tmp_path / "work")
    return result.events.collect(), result


def test_a_warning_in_mail_log_and_mail_warn_counts_once(tmp_path):
    warn = [sasl(1), sasl(2), sasl(2)]  # two failures in one second stay two
    events, result = _ingest(tmp_path, {"mail.log": [IMAP_OK.format(s=0), *warn], "mail.warn": warn})
    assert events.filter(events["daemon"] == "postfix").height == 3
    assert set(events["source_file"]) == {str(tmp_path / "mail.log")}
    assert result.noise["noise:copy"] == 3 and result.event_count == 4
    assert any("counted once" in w for w in result.warnings)


def test_the_copy_kept_is_the_one_that_names_the_account(tmp_path):
    """mail.log joined the warning to Dovecot's auth line; mail.warn has the warning alone."""
    log = [AUTH.format(s=5, ip="203.0.113.9"), sasl(5)]
    events, _ = _ingest(tmp_path, {"mail.warn": [sasl(5)], "mail.log": log})
    assert events["account"].to_list() == ["alice@example.org"]


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        ([sasl(1, ip="198.51.100.4")], 2),  # another client
        ([sasl(1).replace(" mx ", " mx2 ")], 2),  # another server
        ([sasl(1).replace("Nov 23", "Nov 24")], 2),  # another day: the files do not overlap
        ([sasl(1)], 1),
    ],
)
def test_only_the_same_line_is_a_copy(tmp_path, other, expected):
    events, _ = _ingest(tmp_path, {"mail.log": [sasl(1)], "mail.err": other})
    assert events.height == expected


def test_rotated_generations_are_not_compared(tmp_path):
    """mail.log.1 and mail.log never overlap: identical-looking lines a day apart both count."""
    events, result = _ingest(
        tmp_path,
        {"mail.log.1": [sasl(1).replace("Nov 23", "Nov 22")], "mail.log": [sasl(1)]},
    )
    assert events.height == 2 and "noise:copy" not in result.noise


def test_the_same_file_under_two_names_is_read_once_with_a_warning_naming_both(tmp_path):
    a = write_log(tmp_path / "mail.log.1", [sasl(1), sasl(2)])
    (tmp_path / "backup").mkdir()
    b = tmp_path / "backup" / "mail.log.1"
    shutil.copy(a, b)
    result = ingest([str(a), str(b)], IngestConfig(year=2026), tmp_path / "work")
    assert result.event_count == 2
    assert [p for p, _, _ in result.inputs] == [str(a)]
    warning = next(w for w in result.warnings if "same content" in w)
    assert str(a) in warning and str(b) in warning


def test_a_compressed_generation_is_not_its_own_copy(tmp_path):
    plain = write_log(tmp_path / "mail.log.2", [sasl(1).replace("Nov 23", "Nov 21")])
    with gzip.open(tmp_path / "mail.log.3.gz", "wt") as f:
        f.write(sasl(1).replace("Nov 23", "Nov 20") + "\n")
    result = ingest([str(tmp_path)], IngestConfig(year=2026), tmp_path / "work")
    assert result.event_count == 2 and not any("same content" in w for w in result.warnings)
    assert plain.exists()


def test_a_line_in_mail_log_mail_warn_and_mail_err_counts_once(tmp_path):
    """rsyslog's mail.warn holds the errors too: the same line three times is one event."""
    lines = [sasl(1), sasl(3, ip="198.51.100.4")]
    events, result = _ingest(
        tmp_path,
        {"mail.log": [IMAP_OK.format(s=0), *lines], "mail.warn": lines, "mail.err": lines[:1]},
    )
    assert events.height == 3 and result.noise["noise:copy"] == 3


@settings(max_examples=12, deadline=None)
@given(
    attempts=st.lists(
        st.tuples(st.integers(0, 9), st.sampled_from(["203.0.113.9", "198.51.100.4", "2001:db8::7"])),
        min_size=1,
        max_size=8,
    ),
    keep=st.lists(st.booleans(), min_size=8, max_size=8),
)
def test_mail_warn_beside_mail_log_never_changes_the_events(tmp_path_factory, attempts, keep):
    """Whatever subset of mail.log's warnings mail.warn holds, the events are mail.log's alone."""
    tmp = tmp_path_factory.mktemp("copies")
    log = sorted(sasl(s, ip=ip) for s, ip in attempts)
    warn = [x for x, k in zip(log, keep, strict=False) if k]
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    alone, _ = _ingest(tmp / "a", {"mail.log": log})
    both, _ = _ingest(tmp / "b", {"mail.log": log, "mail.warn": warn})
    cols = ["timestamp", "source_ip", "outcome", "account", "line_number"]
    assert both.select(cols).sort(cols).equals(alone.select(cols).sort(cols))
