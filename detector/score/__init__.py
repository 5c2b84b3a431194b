"""Scoring: a trained model (or rules) turns detections into risk scores and verdicts with reasons.

``load_model(path)`` loads a verified model, ``score(detection, model, cfg)`` returns
:class:`Scores` (events, accounts, sources); ``train`` and ``evaluate`` back ``detector train``
and ``detector evaluate``. See ``docs/model.md``.
"""

from __future__ import annotations

from typing import Any

from detector.score.io import Model, load_model, save_model
from detector.score.verdicts import Scores, Verdict, score

__all__ = ["Model", "Scores", "Verdict", "evaluate", "explain", "load_model", "save_model", "score", "train"]


def train(*args: Any, **kwargs: Any) -> Any:
    """See :func:`detector.score.train.train`."""
    from detector.score.train import train as _train

    return _train(*args, **kwargs)


def evaluate(*args: Any, **kwargs: Any) -> Any:
    """See :func:`detector.score.evaluate.evaluate`."""
    from detector.score.evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


def explain(*args: Any, **kwargs: Any) -> Any:
    """See :func:`detector.score.explain.explain`."""
    from detector.score.explain import explain as _explain

    return _explain(*args, **kwargs)
