"""Parser modules; importing this package registers each of them in :mod:`..registry`.

To add a daemon: write ``detector/ingest/parsers/<name>.py`` that calls
``registry.register(LineParser(...))`` at import, add its module name to :data:`MODULES` (the
position is the dispatch priority: earlier modules claim a line first), and add its tests.
Modules listed here but not yet written are skipped, so parallel work can land in any order.
"""

from __future__ import annotations

import importlib

MODULES: tuple[str, ...] = (
    "dovecot",
    "postfix",
    "exim",
    "courier",
    "cyrus",
    "uwimap",
    "cucipop",
    "opensmtpd",
    "sendmail",
    "nginx_mail",
    "zimbra",
    "exchange",
    "mailu",
    "webmail",
    "solid_pop3d",
    "domino",
    "webmail_other",
    "kerio",
    "oracleims",
    "perdition",
    "openwebmail",
)
"""Parser modules in dispatch order."""


def _load() -> tuple[str, ...]:
    loaded = []
    for name in MODULES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            continue
        loaded.append(name)
    return tuple(loaded)


LOADED: tuple[str, ...] = _load()
"""The modules of :data:`MODULES` that exist and were imported."""
