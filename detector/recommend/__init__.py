"""The scoped response plan, its what-if replay and its exports to the enforcement points.

``recommend(scores, detection, cfg, now)`` -> plan (``schema.RECOMMENDATION_SCHEMA``);
``replay(plan, events, labels, cfg)`` -> :class:`ReplayResult`; ``export(plan, fmt)`` -> text.
See ``docs/response-plan.md``.
"""

from __future__ import annotations

from detector.recommend.export import FORMATS, export
from detector.recommend.plan import recommend
from detector.recommend.reopen import waves
from detector.recommend.replay import ReplayResult, combine_results, replay

__all__ = ["FORMATS", "ReplayResult", "combine_results", "export", "recommend", "replay", "waves"]
