"""Saving and loading a model: a skops file (no pickle) beside a JSON model card.

``NAME.skops`` holds the estimators and the feature lists; ``NAME.card.json`` says what the model
is (features, training data, metrics, library versions) and carries the sha256 of ``NAME.skops``.
:func:`load_model` refuses a file without a card, a file whose checksum differs from its card's,
a file written by another major.minor of scikit-learn or skops, and any type in the file outside
:data:`TRUSTED_TYPES`; it never loads with ``trusted=True``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from detector import __version__
from detector.errors import ModelError

if TYPE_CHECKING:
    from detector.score.model import CalibratedBoostingClassifier

# scikit-learn and skops are imported where a model is saved or loaded, not with this module:
# together they take about 2 s to import (skops imports every scikit-learn estimator), which
# `detector run` spends beside detection (detector.pipeline)

CARD_VERSION = "1"
MODEL_SUFFIX = ".skops"
CARD_SUFFIX = ".card.json"

TRUSTED_TYPES: tuple[str, ...] = (
    "detector.score.model.CalibratedBoostingClassifier",
    "detector.score.model.LoginRiskClassifier",
    "detector.score.model.AccountCompromiseClassifier",
    "detector.score.model.SourceRiskClassifier",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.isotonic.IsotonicRegression",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.model_selection._split.StratifiedKFold",
)
"""The only types a model file may contain beyond those skops trusts by default."""


@dataclass(frozen=True)
class Model:
    """A loaded (or freshly trained) model: three estimators, their feature lists, and the card.

    ``account`` and ``source`` may be ``None`` where training data had no positive of that kind;
    scoring then falls back to rules for that level.
    """

    event: CalibratedBoostingClassifier
    account: CalibratedBoostingClassifier | None
    source: CalibratedBoostingClassifier | None
    event_features: tuple[str, ...]
    account_features: tuple[str, ...]
    source_features: tuple[str, ...]
    detector_names: tuple[str, ...]
    """Detectors whose firing is an event feature (those seen in training)."""
    card: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    card_sha256: str | None = None
    """sha256 of the card file as loaded (recorded in every report)."""

    @property
    def model_id(self) -> str:
        return str(self.card.get("model_id", "unsaved"))


def model_paths(path: str | Path) -> tuple[Path, Path]:
    """``(NAME.skops, NAME.card.json)`` for ``NAME``, ``NAME.skops`` or ``NAME.card.json``."""
    p = Path(path)
    name = p.name
    for suffix in (CARD_SUFFIX, MODEL_SUFFIX):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return p.with_name(name + MODEL_SUFFIX), p.with_name(name + CARD_SUFFIX)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    import sklearn
    import skops

    return {
        "python": platform.python_version(),
        "sklearn": sklearn.__version__,
        "skops": skops.__version__,
        "polars": pl.__version__,
        "numpy": np.__version__,
        "detector": __version__,
    }


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def save_model(model: Model, out: str | Path, *, card: dict[str, Any]) -> Model:
    """Write ``out.skops`` and ``out.card.json``; returns the model with its full card and path.

    Args:
        model: The trained model (its own ``card`` is ignored).
        out: ``models/NAME`` (a ``.skops`` suffix is accepted).
        card: Card fields from training (``training``, ``metrics``, ...); identity, features,
            versions and checksum are filled in here.
    """
    import skops.io as sio

    model_file, card_file = model_paths(out)
    model_file.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "event": model.event,
        "account": model.account,
        "source": model.source,
        "event_features": list(model.event_features),
        "account_features": list(model.account_features),
        "source_features": list(model.source_features),
        "detector_names": list(model.detector_names),
    }
    sio.dump(payload, model_file, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    digest = sha256_file(model_file)
    full = {
        "card_version": CARD_VERSION,
        "model_id": f"{model_file.stem}-{digest[:12]}",
        "model_file": model_file.name,
        "sha256": digest,
        "size_bytes": model_file.stat().st_size,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "estimators": {
            "event": type(model.event).__name__,
            "account": type(model.account).__name__ if model.account is not None else None,
            "source": type(model.source).__name__ if model.source is not None else None,
        },
        "features": {
            "event": list(model.event_features),
            "account": list(model.account_features),
            "source": list(model.source_features),
            "detectors": list(model.detector_names),
        },
        "versions": library_versions(),
        **card,
    }
    full.setdefault("metrics", {})
    card_file.write_text(json.dumps(full, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    return Model(
        **{**model.__dict__, "card": full, "path": str(model_file), "card_sha256": sha256_file(card_file)}
    )


def read_card(path: str | Path) -> dict[str, Any]:
    _, card_file = model_paths(path)
    if not card_file.exists():
        raise ModelError(
            "model card not found: a model is only loaded with its card",
            path=card_file,
            hint="train with `detector train` or restore the .card.json beside the .skops file",
        )
    try:
        card = json.loads(card_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"model card is not readable JSON: {e}", path=card_file) from e
    if not isinstance(card, dict) or "sha256" not in card or "versions" not in card:
        raise ModelError("model card lacks sha256 or versions", path=card_file)
    return card


def write_card(path: str | Path, card: dict[str, Any]) -> Path:
    _, card_file = model_paths(path)
    card_file.write_text(json.dumps(card, indent=2, default=str) + "\n", encoding="utf-8")
    return card_file


_DISTRIBUTIONS = {"sklearn": "scikit-learn", "skops": "skops"}


def check_model(path: str | Path) -> dict[str, Any]:
    """The checks of :func:`load_model` that need neither scikit-learn nor skops; returns the card.

    The file and its card exist, the file's checksum is the card's, and the card's scikit-learn and
    skops major.minor are the installed ones (read from the installed distributions' metadata).

    Raises:
        ModelError: missing file or card, checksum mismatch, other sklearn/skops major.minor.
    """
    model_file, _ = model_paths(path)
    if not model_file.exists():
        raise ModelError("model file not found", path=model_file)
    card = read_card(model_file)
    digest = sha256_file(model_file)
    if digest != card["sha256"]:
        raise ModelError(
            f"model file checksum {digest[:12]}… does not match its card ({str(card['sha256'])[:12]}…):"
            " the file was changed or belongs to another card",
            path=model_file,
            hint="retrain or restore the original file",
        )
    for lib, distribution in _DISTRIBUTIONS.items():
        made, have = str(card["versions"].get(lib, "?")), metadata.version(distribution)
        if _major_minor(made) != _major_minor(have):
            raise ModelError(
                f"model was saved with {lib} {made}, this installation has {have}",
                path=model_file,
                hint=f"install {lib}=={_major_minor(made)}.* or retrain with `make model`",
            )
    return card


def load_model(path: str | Path) -> Model:
    """Load ``NAME.skops`` after checking it against ``NAME.card.json`` (:func:`check_model`).

    Raises:
        ModelError: missing file or card, checksum mismatch, other sklearn/skops major.minor,
            or a type in the file that is not in :data:`TRUSTED_TYPES`.
    """
    import skops.io as sio

    card = check_model(path)
    model_file, card_file = model_paths(path)
    try:
        untrusted = sio.get_untrusted_types(file=model_file)
        unexpected = sorted(set(untrusted) - set(TRUSTED_TYPES))
        if unexpected:
            raise ModelError(
                f"model file contains types that are not trusted: {', '.join(unexpected)}",
                path=model_file,
            )
        payload = sio.load(model_file, trusted=list(untrusted))
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"model file cannot be read: {type(e).__name__}: {e}", path=model_file) from e
    return Model(
        event=payload["event"],
        account=payload["account"],
        source=payload["source"],
        event_features=tuple(payload["event_features"]),
        account_features=tuple(payload["account_features"]),
        source_features=tuple(payload["source_features"]),
        detector_names=tuple(payload["detector_names"]),
        card=card,
        path=str(model_file),
        card_sha256=sha256_file(card_file),
    )
