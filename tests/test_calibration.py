"""Classifier calibration (r2n2.evaluate.calibration): ECE against a hand computation, temperature scaling
recovering a planted temperature, APS sets reaching nominal coverage on an exchangeable stream, bad inputs."""

import math

import numpy as np
import pytest
from scipy import special

from r2n2.evaluate.calibration import (aps_scores, aps_sets, aps_threshold, calibration_block, conformal_summary,
                                       expected_calibration_error, fit_temperature, nll, plot_reliability,
                                       reliability_bins, softmax)


def stream(n, rng, *, scale=3.0, temperature=1.0):
    """Exchangeable rows of a 3-class problem with planted probabilities: true logits z ~ N(0, scale^2), the
    label drawn from softmax(z); the model reports logits z * temperature (overconfident when > 1)."""
    z = rng.normal(0, scale, (n, 3))
    p = special.softmax(z, axis=1)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)  # (n,) inverse-CDF draw from each row
    return z * temperature, np.minimum(y, 2)


# -- expected calibration error -----------------------------------------------------------------------------
def test_ece_equals_a_hand_computation():
    # 3 rows at confidence 0.95, all right: bin (14/15, 1], gap 0.05; 2 rows at 0.55, both wrong: bin
    # (8/15, 9/15], gap 0.55. ECE = 3/5 * 0.05 + 2/5 * 0.55 = 0.25
    p = np.array([[0.95, 0.03, 0.02]] * 3 + [[0.55, 0.25, 0.20]] * 2)
    y = np.array([0, 0, 0, 1, 2])
    assert expected_calibration_error(p, y, bins=15) == pytest.approx(0.25)
    rows = reliability_bins(p, y, bins=15)
    used = {i: r for i, r in enumerate(rows) if r["count"]}
    assert set(used) == {8, 14} and used[14]["accuracy"] == 1.0 and used[8]["confidence"] == pytest.approx(0.55)
    assert sum(r["count"] for r in rows) == 5 and rows[0]["bin_low"] == 0 and rows[-1]["bin_high"] == 1


def test_ece_is_near_zero_when_calibrated_and_large_when_overconfident():
    rng = np.random.default_rng(0)
    z, y = stream(20000, rng)
    assert expected_calibration_error(softmax(z), y) < 0.01  # the labels are drawn from these probabilities
    assert expected_calibration_error(softmax(z * 3), y) > 0.08  # same ranking, three times too sharp
    # a model that always says 0.99 and is right half the time: ECE = 0.49 exactly
    p = np.tile([0.99, 0.005, 0.005], (4, 1))
    assert expected_calibration_error(p, np.array([0, 1, 0, 2])) == pytest.approx(0.49)


# -- temperature scaling -------------------------------------------------------------------------------------
@pytest.mark.parametrize("planted", [0.5, 2.5])
def test_temperature_scaling_recovers_a_planted_temperature(planted):
    rng = np.random.default_rng(1)
    logits, y = stream(20000, rng, temperature=planted)
    t = fit_temperature(logits, y)
    assert t == pytest.approx(planted, rel=0.05)
    z_test, y_test = stream(5000, rng, temperature=planted)
    before, after = softmax(z_test), softmax(z_test, t)
    assert (after.argmax(axis=1) == before.argmax(axis=1)).all()  # argmax, hence accuracy, never moves
    assert nll(after, y_test) < nll(before, y_test)
    assert expected_calibration_error(after, y_test) < expected_calibration_error(before, y_test)


def test_calibration_block_fits_on_validation_and_keeps_accuracy():
    rng = np.random.default_rng(2)
    zv, yv = stream(3000, rng, temperature=2.0)
    zt, yt = stream(3000, rng, temperature=2.0)
    block, curves = calibration_block(zv, yv, zt, yt, bins=15, alpha=0.1,
                                      baselines={"other": (softmax(zv / 2), yv, softmax(zt / 2))})
    assert block["temperature"] == pytest.approx(fit_temperature(zv, yv))  # from validation rows only
    assert block["temperature"] != pytest.approx(fit_temperature(zt, yt), abs=1e-4)
    assert block["accuracy"]["raw"] == block["accuracy"]["temperature"]
    assert block["ece"]["temperature"] < block["ece"]["raw"] and block["nll"]["temperature"] < block["nll"]["raw"]
    assert set(block["conformal"]) == {"alpha", "method", "model", "other"} and block["conformal"]["alpha"] == 0.1
    assert block["conformal"]["model"]["n_calibration"] == 3000 and set(curves) == {"raw", "temperature"}


def test_reliability_plot_is_a_png(tmp_path):
    rng = np.random.default_rng(3)
    z, y = stream(2000, rng, temperature=2.0)
    curves = {"raw": reliability_bins(softmax(z), y), "scaled": reliability_bins(softmax(z, 2.0), y)}
    assert plot_reliability(curves, tmp_path / "r.png", title="t").read_bytes()[:4] == b"\x89PNG"


# -- conformal prediction sets -------------------------------------------------------------------------------
def test_aps_scores_and_sets_by_hand():
    p = np.array([[0.5, 0.2, 0.3], [0.1, 0.6, 0.3]])
    # labels ranked by decreasing probability; score = mass strictly above: row 0 ranks 0, 2, 1
    assert aps_scores(p) == pytest.approx(np.array([[0.0, 0.8, 0.5], [0.9, 0.0, 0.6]]))
    assert aps_sets(p, 0.55).tolist() == [[True, False, True], [False, True, False]]
    # 9 two-class calibration rows [1 - s, s] with y = 1 and s = 0.05 .. 0.45: the score of y is 1 - s
    s = np.arange(1, 10) / 20
    cal, y = np.c_[1 - s, s], np.ones(9, dtype=int)
    assert np.sort(aps_scores(cal)[:, 1]) == pytest.approx(np.arange(11, 20) / 20)  # 0.55 .. 0.95
    assert aps_threshold(cal, y, alpha=0.2) == pytest.approx(0.9)  # ceil(10 * 0.8) = 8th smallest
    assert aps_threshold(cal, y, alpha=0.1) == pytest.approx(0.95)  # ceil(10 * 0.9) = 9th: the largest
    assert aps_threshold(cal, y, alpha=0.05) == float("inf")  # ceil(10 * 0.95) = 10th of 9: every label


def test_aps_reaches_nominal_coverage_on_an_exchangeable_stream():
    rng = np.random.default_rng(4)
    zc, yc = stream(20000, rng)
    zt, yt = stream(20000, rng)
    pc, pt = softmax(zc), softmax(zt)
    assert np.mean(pt.argmax(axis=1) == yt) < 0.85  # the top label alone would undercover: sets must grow
    s = conformal_summary(pc, yc, pt, yt, alpha=0.1)
    # coverage sd ~ sqrt(0.09 / 20000) from each side, about 0.003 together: 0.01 is over three of them
    assert abs(s["coverage"] - 0.9) < 0.01
    assert 1 < s["mean_set_size"] < 2
    sets = aps_sets(pt, s["threshold"])
    assert sets.any(axis=1).all()  # never empty: the top label scores 0
    assert sets[np.arange(len(pt)), pt.argmax(axis=1)].all()
    # adaptive: confident rows get smaller sets than uncertain ones
    conf = pt.max(axis=1)
    assert sets[conf > 0.9].sum(axis=1).mean() < sets[conf < 0.6].sum(axis=1).mean()


def test_aps_threshold_uses_only_the_rows_it_is_given():
    rng = np.random.default_rng(5)
    zc, yc = stream(2000, rng)
    zt, _ = stream(2000, rng)
    wrong = softmax(zt).argmin(axis=1)  # test labels that are always the least likely: a leak would show
    q = aps_threshold(softmax(zc), yc, alpha=0.1)
    leaked = aps_threshold(np.vstack([softmax(zc), softmax(zt)]), np.r_[yc, wrong], alpha=0.1)
    assert leaked > q
    s = np.sort(aps_scores(softmax(zc))[np.arange(2000), yc])
    assert q == s[math.ceil(2001 * 0.9) - 1]


# -- bad inputs ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, message", [
    (lambda: expected_calibration_error(np.array([[0.5, 0.4, 0.0]]), [0]),
     "probabilities must sum to 1 in every row; row 0 sums to 0.9."),
    (lambda: expected_calibration_error(np.array([[1.2, -0.2]]), [0]), "probabilities must lie in [0, 1]."),
    (lambda: aps_threshold(np.array([[0.5, 0.5]]), [0], alpha=1.0), "alpha must be in (0, 1), got 1.0."),
    (lambda: conformal_summary(np.eye(2), [0, 1], np.eye(2), [0, 1], alpha=0), "alpha must be in (0, 1), got 0."),
    (lambda: expected_calibration_error(np.zeros((0, 3)), []),
     "calibration needs an (n, K) array of probabilities with n >= 1 and K >= 2, got shape (0, 3)."),
    (lambda: fit_temperature(np.zeros((0, 3)), []),
     "calibration needs an (n, K) array of logits with n >= 1 and K >= 2, got shape (0, 3)."),
    (lambda: fit_temperature(np.zeros((2, 3)), [0]), "calibration needs one label per row: 2 rows, 1 labels."),
    (lambda: nll(np.eye(3), [0, 1, 3]), "labels must be class ids in 0 .. 2."),
    (lambda: reliability_bins(np.eye(3), [0, 1, 2], bins=0), "bins must be a positive integer, got 0."),
])
def test_bad_inputs(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value) == message


# -- through the sentiment evaluate stage --------------------------------------------------------------------
@pytest.mark.slow
def test_tiny_sentiment_run_reports_calibration(project, capsys):
    import json
    from pathlib import Path

    import pandas as pd

    from .conftest import make_texts
    from .test_training import TEXT, stages

    make_texts(900).to_csv("tweets.csv", index=False)
    args = [*TEXT, "--set", "sentiment.window.val_fraction=0.2"]  # more validation than test texts
    stages(capsys, "sentiment", args, ["ingest", "validate", "window", "train", "baselines", "evaluate"])
    reports = Path("data/reports/sentiment")
    m = json.loads((reports / "metrics.json").read_text())
    c = m["calibration"]
    assert c["bins"] == 15 and c["temperature"] > 0 and c["fitted_on"] == "validation"
    assert set(c["ece"]) == set(c["nll"]) == {"raw", "temperature"}
    assert c["accuracy"]["raw"] == c["accuracy"]["temperature"] == pytest.approx(m["model"]["accuracy"])
    assert c["nll"]["temperature"] <= c["nll"]["raw"] + 0.05  # fitted on validation, scored on test
    conf = c["conformal"]
    assert conf["alpha"] == 0.1 and {"model", "tfidf_logreg"} <= set(conf)
    texts = pd.read_parquet("data/windows/sentiment/texts.parquet")
    n_val = int(((texts["domain"] == "source") & (texts["split"] == "val")).sum())
    assert n_val != m["test_period"]["n"]  # so the count below tells the splits apart
    for name in ("model", "tfidf_logreg"):
        assert 0 < conf[name]["coverage"] <= 1 and 1 <= conf[name]["mean_set_size"] <= 3
        assert conf[name]["n_calibration"] == n_val  # calibrated on the validation texts, never on test
    assert (reports / "plots" / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    report = (reports / "report.md").read_text()
    assert "## Probabilities" in report and "after temperature scaling (T = " in report
