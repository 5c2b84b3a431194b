"""Other webmail front ends: Horde, SquirrelMail (squirrel_logger), Tine 2.0 and Group-Office login
failures.

Each writes its own words first, then the name the visitor typed (verbatim: spaces, brackets and
quotes included), then the address in the daemon's closing words, so the outcome is read from
the words, the address from where the closing words put it (the last match, anchored to the end
or to the next fixed word) and a second copy of the opening words is ``ambiguous_field``.
"""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import canonical_ip, repeated
from detector.ingest.parsers._common import EVENT, M, first, has, kind, lower_or_null, narrowed_columns
from detector.ingest.registry import LineParser, register
from detector.ingest.screen import AMBIGUOUS
from detector.schema import Action, C, Outcome, Service

_HORDE = "FAILED LOGIN for "
_SQM = "[LOGIN_ERROR] "
_TINE = "Tinebase_Controller::login::"
_GO = 'LOGIN FAILED for user: "'
_IP = r"([0-9A-Fa-f:.]+)"
_SHAPES = {
    "horde": rf"(?s)FAILED LOGIN for (.*) \[{_IP}\] to ",
    "squirrelmail": rf"(?s)\[LOGIN_ERROR\] (.*) \([^()]*\) from {_IP}: ",
    "tine20": rf"(?s)Tinebase_Controller::login::\d+ Login with username (.*) from {_IP} failed \(-?\d+\)!?\s*$",
    "groupoffice": rf'(?s)LOGIN FAILED for user: "(.*)" from IP: {_IP}\s*$',
}
_WORDS = {"horde": _HORDE, "squirrelmail": _SQM, "tine20": _TINE, "groupoffice": _GO}


def claims() -> pl.Expr:
    return has(_HORDE) | has(_SQM) | (has(_TINE) & has(" Login with username ")) | has(_GO)


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    which = first([(has(words), name) for name, words in _WORDS.items()]).cast(pl.String)
    parts = {name: M.str.extract_groups(shape).struct for name, shape in _SHAPES.items()}
    user = first([(which == name, p.field("1")) for name, p in parts.items()]).cast(pl.String)
    address = first([(which == name, p.field("2")) for name, p in parts.items()]).cast(pl.String)
    ambiguous = repeated(M, _HORDE, _SQM, _TINE, _GO, " Login with username ")
    columns = [
        which.alias(C.DAEMON),
        pl.lit(Service.WEBMAIL).alias(C.SERVICE),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.lit(Outcome.FAILURE).alias(C.OUTCOME),
        lower_or_null(user).alias(C.ACCOUNT),
        canonical_ip(address).alias(C.SOURCE_IP),
        pl.lit(1).alias(C.ATTEMPTS),
        pl.lit("login failed").alias(C.REASON),
        kind(
            [
                (which.is_not_null() & ambiguous, AMBIGUOUS),
                (which.is_not_null() & address.is_null(), "unparsed"),
                (which.is_not_null(), EVENT),
            ]
        ),
    ]
    return narrowed_columns(lf, columns)


PARSER = register(
    LineParser(
        name="webmail_other",
        claims=claims,
        programs=r"^(?:horde|HORDE|squirrelmail|tine20|groupoffice)",
        messages=r"FAILED LOGIN for |\[LOGIN_ERROR\] |Tinebase_Controller::login::|LOGIN FAILED for user: ",
        parse=parse,
        doc="Horde 'FAILED LOGIN for', SquirrelMail '[LOGIN_ERROR]', Tine 2.0 'Login with username ... failed' and Group-Office 'LOGIN FAILED for user:' lines.",
    )
)
