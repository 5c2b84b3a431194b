"""``detector serve``: the plan in force applied at login time (Dovecot auth policy, Postfix policy).

Entry points: :func:`serve` (run until signalled), :class:`Service` (one instance, its handlers),
:class:`Background` (a service on a thread, for tests and the bench); the decision itself is
:class:`~detector.serve.engine.Engine`. See docs/serve.md.
"""

from detector.serve.engine import Decision, Engine, login_request
from detector.serve.index import PlanIndex, build_index
from detector.serve.service import Background, ServeOptions, Service, parse_listen, serve

__all__ = [
    "Background",
    "Decision",
    "Engine",
    "PlanIndex",
    "ServeOptions",
    "Service",
    "build_index",
    "login_request",
    "parse_listen",
    "serve",
]
