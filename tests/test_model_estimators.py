"""The model's estimators obey scikit-learn's contract (its own estimator checks)."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from detector.score.model import (
    AccountCompromiseClassifier,
    CalibratedBoostingClassifier,
    LoginRiskClassifier,
    SourceRiskClassifier,
)

FAST = {"max_iter": 5, "cv": 2}


def _expected_failures(estimator) -> dict[str, str]:
    # The same exemption scikit-learn grants HistGradientBoostingClassifier itself: histogram
    # binning makes a weight of 2 differ slightly from a repeated row.
    reason = "sample_weight is not equivalent to repeating samples (binning, as in HistGradientBoosting)"
    return {"check_sample_weight_equivalence_on_dense_data": reason}


@parametrize_with_checks(
    [
        LoginRiskClassifier(**FAST),
        AccountCompromiseClassifier(**FAST),
        SourceRiskClassifier(**FAST),
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_estimator_checks(estimator, check) -> None:
    check(estimator)


def test_probabilities_are_calibrated_and_separate() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3))
    y = (X[:, 0] + 0.3 * rng.normal(size=600) > 1.0).astype(int)
    clf = LoginRiskClassifier(max_iter=30).fit(X, y)
    p = clf.positive_proba(X)
    assert ((p >= 0) & (p <= 1)).all()
    assert p[y == 1].mean() > 0.6 > 0.2 > p[y == 0].mean()


def test_unfitted_refuses_to_predict() -> None:
    with pytest.raises(NotFittedError):
        CalibratedBoostingClassifier().predict_proba(np.zeros((2, 2)))


def test_one_sample_of_a_class_falls_back_to_uncalibrated_trees() -> None:
    X = np.arange(20, dtype=float).reshape(10, 2)
    y = np.array([0] * 9 + [1])
    clf = AccountCompromiseClassifier(max_iter=5, min_samples_leaf=1).fit(X, y)
    assert clf.predict_proba(X).shape == (10, 2)


def test_bad_calibration_name_is_refused() -> None:
    with pytest.raises(ValueError, match="calibration"):
        CalibratedBoostingClassifier(calibration="platt").fit(np.zeros((4, 1)), [0, 1, 0, 1])


@pytest.mark.parametrize("calibration", ["isotonic", "sigmoid"])
def test_distinct_path_prediction_is_exact(monkeypatch, calibration) -> None:
    import detector.score.model as m

    rng = np.random.default_rng(1)
    X = np.column_stack(
        [rng.integers(0, 5, 3000), rng.normal(size=3000).round(1), rng.integers(0, 2, 3000), np.zeros(3000)]
    ).astype(float)
    y = ((X[:, 0] > 2) ^ (rng.random(3000) < 0.1)).astype(int)
    clf = LoginRiskClassifier(max_iter=20, calibration=calibration).fit(X, y)
    monkeypatch.setattr(m, "DISTINCT_MIN_ROWS", 0)
    rows = np.vstack([X, X[:50] + 1e-9, np.full((1, 4), 1e300), np.full((1, 4), -1e300)])
    assert np.array_equal(clf.predict_proba(rows), clf.estimator_.predict_proba(rows))


def test_path_codes_tell_apart_each_side_of_a_threshold() -> None:
    from detector.score.model import path_codes

    thresholds = [np.array([1.0, 2.0]), np.array([]), np.array([0.5])]
    X = np.array([[1.0, 9, 0.5], [1.5, 8, 0.5], [2.0, 7, 0.6], [3.0, 6, 0.0], [0.0, 5, 0.5]])
    codes = path_codes(X, thresholds)
    # 1.0 and 0.0 are on the same side of every split; 1.5, 2.0 and 3.0 (or 0.6) are not
    assert codes.n_unique() == 4
    assert codes.row(0) == codes.row(4)


def test_large_predictions_go_through_distinct_paths() -> None:
    import detector.score.model as m

    rng = np.random.default_rng(2)
    X = rng.integers(0, 3, size=(m.DISTINCT_MIN_ROWS + 10, 3)).astype(float)
    y = (X[:, 0] + rng.random(len(X)) > 2).astype(int)
    clf = LoginRiskClassifier(max_iter=5, cv=2).fit(X, y)
    assert np.array_equal(clf.predict_proba(X), clf.estimator_.predict_proba(X))


def test_path_rows_take_the_same_path_as_the_rows_they_stand_for() -> None:
    from detector.score.model import path_codes, path_rows

    thresholds = [np.array([1.0, 2.0]), np.array([]), np.array([-0.5, 0.5, 7.0])]
    X = np.array([[1.0, 9, 0.5], [1.5, 8, -3.0], [2.0, 7, 7.0], [3.0, 6, 7.5], [-9.0, 5, 0.0]])
    codes = path_codes(X, thresholds)
    rows = path_rows(codes, thresholds)
    assert path_codes(rows, thresholds).equals(codes)
    assert (rows[:, 1] == 0).all()


@pytest.mark.parametrize("batches", [1, 3])
def test_predict_paths_over_batches_equals_predict_proba(batches) -> None:
    import polars as pl

    rng = np.random.default_rng(3)
    X = np.column_stack(
        [rng.integers(0, 5, 2000), rng.normal(size=2000).round(2), rng.integers(0, 2, 2000), np.zeros(2000)]
    ).astype(float)
    y = ((X[:, 0] > 2) ^ (rng.random(2000) < 0.1)).astype(int)
    clf = LoginRiskClassifier(max_iter=15).fit(X, y)
    thresholds = clf.thresholds()
    parts = np.array_split(X, batches)
    found = [clf.paths(part, thresholds) for part in parts]
    every = pl.concat([codes for codes, _ in found]).unique()
    proba = clf.predict_paths(every, thresholds, threads=2)
    where = every.with_row_index("_i")
    for part, (codes, inverse) in zip(parts, found, strict=True):
        index = codes.join(where, on=codes.columns, how="left", maintain_order="left")["_i"].to_numpy()
        assert np.array_equal(proba[index[inverse]], clf.estimator_.predict_proba(part))


def test_paths_refuse_non_finite_rows() -> None:
    clf = LoginRiskClassifier(max_iter=3, cv=2).fit(np.arange(20.0).reshape(10, 2), [0, 1] * 5)
    with pytest.raises(ValueError):
        clf.paths(np.array([[np.inf, 0.0]]), clf.thresholds())


def test_paths_of_no_rows() -> None:
    clf = LoginRiskClassifier(max_iter=3, cv=2).fit(np.arange(20.0).reshape(10, 2), [0, 1] * 5)
    codes, inverse = clf.paths(np.zeros((0, 2)), clf.thresholds())
    assert codes.height == 0 and len(inverse) == 0
    assert clf.predict_paths(codes, clf.thresholds()).shape == (0, 2)
