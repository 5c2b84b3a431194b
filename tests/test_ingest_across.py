"""A Postfix SASL failure in syslog and the Dovecot auth line naming its account in Dovecot's own log."""

from __future__ import annotations

import pytest
from ingest_helpers import write_log

from detector.config import IngestConfig
from detector.ingest import ingest

PF = [
    "Nov 23 03:14:15 mx postfix/submission/smtpd[2001]: connect from unknown[203.0.113.9]",
    "Nov 23 03:14:17 mx postfix/submission/smtpd[2001]: warning: unknown[203.0.113.9]: SASL PLAIN authentication failed: UGFzc3dvcmQ6",
    "Nov 23 03:14:17 mx postfix/submission/smtpd[2001]: disconnect from unknown[203.0.113.9] ehlo=1 auth=0/1 quit=1 commands=2/3",
]
SYSLOG_AUTH = "Nov 23 {t} {host} dovecot: auth: passwd-file(alice@example.org,{ip}): Password mismatch"
LOG_PATH_AUTH = "Nov 23 {t} auth: Info: passwd-file(alice@example.org,{ip}): Password mismatch"


def _ingest(tmp_path, files: dict[str, list[str]]):
    paths = [str(write_log(tmp_path / name, lines)) for name, lines in files.items()]
    result = ingest(paths, IngestConfig(year=2026), tmp_path / "work")
    return result.events.collect(), result


@pytest.mark.parametrize(
    ("dovecot_line", "merged"),
    [
        (SYSLOG_AUTH.format(t="03:14:17", host="mx", ip="203.0.113.9"), True),
        (LOG_PATH_AUTH.format(t="03:14:17", ip="203.0.113.9"), True),  # log_path lines name no host
        (SYSLOG_AUTH.format(t="03:14:16", host="mx", ip="203.0.113.9"), True),
        (SYSLOG_AUTH.format(t="03:14:17", host="imap2", ip="203.0.113.9"), False),  # another server
        (SYSLOG_AUTH.format(t="03:14:25", host="mx", ip="203.0.113.9"), False),  # too far apart
        (SYSLOG_AUTH.format(t="03:14:17", host="mx", ip="198.51.100.1"), False),  # another client
    ],
)
def test_the_two_lines_of_one_attempt_in_two_files_count_once(tmp_path, dovecot_line, merged):
    events, result = _ingest(tmp_path, {"mail.log": PF, "dovecot.log": [dovecot_line]})
    postfix = events.filter(events["daemon"] == "postfix").row(0, named=True)
    if merged:
        assert len(events) == 1 and result.event_count == 1
        assert (postfix["account"], postfix["reason"]) == ("alice@example.org", "Password mismatch")
        assert result.noise["noise:merged"] == 2  # the disconnect counter and the Dovecot line
    else:
        assert len(events) == 2 and postfix["account"] is None


def test_one_dovecot_line_completes_one_postfix_failure_only(tmp_path):
    second = PF[1].replace("03:14:17", "03:14:18").replace("[2001]", "[2002]")
    events, _ = _ingest(
        tmp_path,
        {
            "mail.log": [*PF[:2], second],
            "dovecot.log": [SYSLOG_AUTH.format(t="03:14:17", host="mx", ip="203.0.113.9")],
        },
    )
    # the nearest failure (same second) takes the account; the other stays without one
    assert events.sort("timestamp")["account"].to_list() == ["alice@example.org", None]


def test_the_same_file_join_is_unchanged(tmp_path):
    auth = SYSLOG_AUTH.format(t="03:14:17", host="mx", ip="203.0.113.9")
    events, _ = _ingest(tmp_path, {"mail.log": [*PF[:2], auth, PF[2]], "other.log": [PF[0]]})
    assert len(events) == 1 and events["account"][0] == "alice@example.org"
