"""The parser registry: one :class:`LineParser` per daemon, looked up by name.

Contract (see docs/ARCHITECTURE.md, "the parser contract"):

Input of ``parse`` -- a LazyFrame holding only the rows the parser claimed, with these columns
(:data:`ENVELOPE_SCHEMA`):

===============  ==================  ==========================================================
``timestamp``    Datetime(us, UTC)   when the line was logged
``host``         String              syslog host; null for Dovecot's own ``log_path`` files
``program``      String              ``dovecot``, ``imap-login``, ``postfix/submission/smtpd``,
                                     ``auth-worker(12)``,
                                     ``imap(user)<pid><session>`` in ``log_path``
                                     files, ...; null when the line has a time
                                     stamp but no ``tag:`` (Exim main log, ...)
``pid``          Int64 (nullable)    the ``[pid]`` of the envelope
``message``      String              the text after ``prog[pid]: `` and after Dovecot's
                                     ``Info: ``/``Warning: ``/``Error: `` level, if any
``source_file``  String              file the line came from
``line_number``  Int64               1-based line number in ``source_file``
===============  ==================  ==========================================================

Output of ``parse`` -- the same rows (same count, any order) with every column of
:data:`detector.schema.EVENT_SCHEMA` plus ``kind`` (String):

* ``"event"``: an event (``daemon``, ``action``, ``outcome``, ... filled per the schema docs);
* ``"noise:<what>"``: a known non-event line, counted by kind (``noise:connect``, ...);
* ``"unparsed"``: a line of the daemon that looks authentication-related but cannot be read;
  it is quarantined with reason ``unparsed``.

``timestamp``, ``host``, ``source_file`` and ``line_number`` must be passed through unchanged.
Private String columns ``_stage``, ``_qid`` and ``_smtpd`` may be returned as hints for
:mod:`detector.ingest.correlate` (the Dovecot and Postfix parsers do); any other extra column is
dropped.
:func:`detector.ingest.fields.finish` selects and casts the output columns for you.

Dispatch: every envelope row goes to the FIRST registered parser whose ``claims()`` is true for
it (registration order = the order of :data:`detector.ingest.parsers.MODULES`); rows that no
parser claims are counted as ``noise:unclaimed``. A parser may declare a cheap pre-test
(:attr:`LineParser.programs`, :attr:`LineParser.messages`): a superset of what it claims, so that
the lines of other programs skip its claims.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from detector.errors import ConfigError, did_you_mean
from detector.schema import UTC_US, C

ENVELOPE_SCHEMA = pl.Schema(
    {
        C.TIMESTAMP: UTC_US,
        C.HOST: pl.String,
        "program": pl.String,
        "pid": pl.Int64,
        "message": pl.String,
        C.SOURCE_FILE: pl.String,
        C.LINE_NUMBER: pl.Int64,
    }
)
"""Columns (and dtypes) every ``parse`` receives."""

KIND = "kind"
"""Extra output column of ``parse``: ``event``, ``noise:<what>`` or ``unparsed``."""


@dataclass(frozen=True)
class LineParser:
    """A unit that turns the lines of one daemon into events."""

    name: str
    """Registry name: ``dovecot``, ``postfix``, ``exim``, ..."""
    claims: Callable[[], pl.Expr]
    """Boolean expression over ``program``/``message``: the rows this parser takes."""
    parse: Callable[[pl.LazyFrame], pl.LazyFrame]
    """Claimed rows in (:data:`ENVELOPE_SCHEMA`), EVENT_SCHEMA + ``kind`` out."""
    doc: str
    """One line: what it reads."""
    programs: str | None = None
    """Optional pre-test, a regex on ``program``: with it, the parser says it claims only lines with
    no program, lines whose program matches it, or lines whose message matches :attr:`messages`.
    Lines that fail the pre-test of every parser after the first two are never offered to their
    ``claims`` (a program name test is much cheaper than a dozen claims on sshd or cron lines).
    ``None`` (and no :attr:`messages`) offers every line."""
    messages: str | None = None
    """Optional regex on ``message`` of lines claimed whatever their program (see :attr:`programs`)."""


_REGISTRY: dict[str, LineParser] = {}


def register(parser: LineParser) -> LineParser:
    """Add ``parser`` to the registry (at import of its module); returns it unchanged."""
    if parser.name in _REGISTRY and _REGISTRY[parser.name] is not parser:
        raise ValueError(f"parser {parser.name!r} registered twice")
    if not parser.doc:
        raise ValueError(f"parser {parser.name!r} has no doc")
    _REGISTRY[parser.name] = parser
    return parser


def parsers() -> tuple[LineParser, ...]:
    """Every registered parser, in dispatch order (imports the parser modules on first use)."""
    import detector.ingest.parsers  # noqa: F401  (registers on import)

    return tuple(_REGISTRY.values())


def pretest(chosen: tuple[LineParser, ...]) -> pl.Expr | None:
    """The lines any of ``chosen`` may claim, from their pre-tests (None: every line, where one of
    them declares none)."""
    if not chosen or any(p.programs is None and p.messages is None for p in chosen):
        return None
    prog, msg = pl.col("program"), pl.col("message")
    out = prog.is_null()
    programs = [f"(?:{p.programs})" for p in chosen if p.programs is not None]
    if programs:
        out = out | prog.str.contains("|".join(programs))
    messages = [f"(?:{p.messages})" for p in chosen if p.messages is not None]
    if messages:
        out = out | msg.str.contains("|".join(messages)).fill_null(False)
    return out


def get(name: str) -> LineParser:
    """The parser named ``name``; ConfigError with a hint if there is none."""
    known = {p.name: p for p in parsers()}
    if name not in known:
        raise ConfigError(f"unknown parser {name!r}", hint=did_you_mean(name, known))
    return known[name]
