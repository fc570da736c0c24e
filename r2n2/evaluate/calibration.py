"""Calibration of a classifier's probabilities: expected calibration error and reliability bins, temperature
scaling, and conformal prediction sets (adaptive prediction sets, APS).

Written here, in numpy and scipy, because the well-kept libraries that ship them (mapie, crepes, netcal) wrap
their own estimators or bring dependencies this project does not have; each function is a few lines and is
tested against a hand computation or a planted answer (``tests/test_calibration.py``). Every fitted quantity
(the temperature, the conformal threshold) is fitted on the rows it is given: the caller hands it the validation
split, never the test split.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["aps_scores", "aps_sets", "aps_threshold", "calibration_block", "check_probabilities",
           "conformal_summary", "expected_calibration_error", "fit_temperature", "nll", "plot_reliability",
           "reliability_bins", "softmax", "SET_LEVELS", "predict_calibration", "set_threshold"]

SET_LEVELS = tuple(round(0.5 + 0.01 * i, 2) for i in range(50))  # coverage levels of `predict --sets`: 0.50 .. 0.99

_SUM_TOL = 1e-6  # float32 softmax rows sum to 1 within ~1e-7


def _labels(y, n: int, k: int) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if len(y) != n:
        raise ValueError(f"calibration needs one label per row: {n} rows, {len(y)} labels.")
    if not np.issubdtype(y.dtype, np.integer) or (y < 0).any() or (y >= k).any():
        raise ValueError(f"labels must be class ids in 0 .. {k - 1}.")
    return y


def _matrix(x, what: str) -> np.ndarray:
    x = np.asarray(x, float)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] < 2:
        raise ValueError(f"calibration needs an (n, K) array of {what} with n >= 1 and K >= 2, got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} must be finite.")
    return x


def check_probabilities(probs, y=None) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, K) class probabilities (and their (n,) labels) as arrays, or a ValueError saying what is wrong."""
    p = _matrix(probs, "probabilities")
    if (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must lie in [0, 1].")
    sums = p.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1) > _SUM_TOL)
    if len(bad):
        raise ValueError(f"probabilities must sum to 1 in every row; row {bad[0]} sums to {sums[bad[0]]:.6g}.")
    return p, (None if y is None else _labels(y, *p.shape))


def _check_alpha(alpha: float) -> float:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}.")
    return float(alpha)


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """(n, K) logits (or log-probabilities) -> probabilities of softmax(logits / T), in float64."""
    from scipy import special

    return special.softmax(_matrix(logits, "logits") / temperature, axis=1)


# ------------------------------------------------------------------------------------------- reliability
def reliability_bins(probs, y, *, bins: int = 15) -> list[dict]:
    """Top-label reliability bins (Naeini, Cooper & Hauskrecht 2015; Guo, Pleiss, Sun & Weinberger 2017):
    each row goes to the equal-width bin ((b - 1) / B, b / B] holding its top probability (its confidence);
    per bin the row count, the mean confidence and the accuracy (share whose top label is the true one)."""
    p, y = check_probabilities(probs, y)
    if bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins}.")
    conf = p.max(axis=1)  # (n,)
    correct = p.argmax(axis=1) == y  # (n,)
    b = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)  # (n,) bin index, right-closed bins
    count = np.bincount(b, minlength=bins)
    conf_sum = np.bincount(b, weights=conf, minlength=bins)
    acc_sum = np.bincount(b, weights=correct.astype(float), minlength=bins)
    return [{"bin_low": i / bins, "bin_high": (i + 1) / bins, "count": int(count[i]),
             "confidence": float(conf_sum[i] / count[i]) if count[i] else None,
             "accuracy": float(acc_sum[i] / count[i]) if count[i] else None} for i in range(bins)]


def expected_calibration_error(probs, y, *, bins: int = 15) -> float:
    """Top-label ECE with ``bins`` equal-width confidence bins (Naeini, Cooper & Hauskrecht 2015; Guo et al. 2017):
    sum_b |B_b| / n * |accuracy(B_b) - confidence(B_b)|. 0 for a calibrated classifier (up to sampling noise,
    which biases it upwards on few rows)."""
    rows = reliability_bins(probs, y, bins=bins)
    n = sum(r["count"] for r in rows)
    return float(sum(r["count"] / n * abs(r["accuracy"] - r["confidence"]) for r in rows if r["count"]))


def nll(probs, y) -> float:
    """Mean negative log-likelihood of the true labels (natural log; a zero probability is clipped at 1e-12)."""
    p, y = check_probabilities(probs, y)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))


# ------------------------------------------------------------------------------------ temperature scaling
def fit_temperature(logits, y, *, log_bounds: tuple[float, float] = (-3.0, 3.0)) -> float:
    """Temperature scaling (Guo, Pleiss, Sun & Weinberger 2017, "On calibration of modern neural networks"):
    the one scalar T > 0 minimising the mean negative log-likelihood of softmax(logits / T) on the rows given
    (the validation split), searched over log T in ``log_bounds`` (bounded Brent, scipy.optimize.minimize_scalar).
    T > 1 softens an overconfident model; the argmax, hence accuracy, is unchanged for any T > 0."""
    from scipy import optimize, special

    z = _matrix(logits, "logits")
    y = _labels(y, *z.shape)

    def loss(log_t: float) -> float:
        logp = special.log_softmax(z * math.exp(-log_t), axis=1)  # (n, K)
        return float(-logp[np.arange(len(y)), y].mean())

    res = optimize.minimize_scalar(loss, bounds=log_bounds, method="bounded", options={"xatol": 1e-6})
    return float(math.exp(res.x))


# ----------------------------------------------------------------------------------- conformal prediction
def aps_scores(probs) -> np.ndarray:
    """(n, K) non-randomised APS conformity score of every label: the probability mass of the labels ranked
    strictly above it (ranked by decreasing probability, ties by class id). This is the score of adaptive
    prediction sets (Romano, Sesia & Candès 2020, "Classification with valid and adaptive coverage"; their
    randomised score is the mass above y + U * p_y) at U = 0, so the top label always scores 0 and no set is
    ever empty."""
    p, _ = check_probabilities(probs)
    order = np.argsort(-p, axis=1, kind="stable")  # (n, K) labels by decreasing probability
    ranked = np.take_along_axis(p, order, axis=1)
    above = np.cumsum(ranked, axis=1) - ranked  # (n, K) mass strictly above each rank
    scores = np.empty_like(p)
    np.put_along_axis(scores, order, above, axis=1)  # back to class order
    return scores


def aps_threshold(probs_cal, y_cal, *, alpha: float) -> float:
    """Split-conformal threshold (Vovk, Gammerman & Shafer 2005; Romano et al. 2020) from calibration rows only:
    the ceil((n + 1)(1 - alpha))-th smallest true-label score, i.e. the empirical quantile at level
    ceil((n + 1)(1 - alpha)) / n; +inf (every label) when n is too small for that level."""
    alpha = _check_alpha(alpha)
    p, y = check_probabilities(probs_cal, y_cal)
    s = np.sort(aps_scores(p)[np.arange(len(y)), y])  # (n,) true-label scores
    n = len(s)
    k = math.ceil(round((n + 1) * (1 - alpha), 9))  # round: (n + 1) * 0.9 must not become k + 1e-15
    return float(s[k - 1]) if k <= n else float("inf")


def aps_sets(probs, threshold: float) -> np.ndarray:
    """(n, K) boolean prediction sets: every label whose APS score is at most ``threshold`` (the labels in
    decreasing probability until the mass before them passes it). Label y is in the set exactly when its score
    is, so with exchangeable calibration and test rows P(y in set) >= 1 - alpha (and < 1 - alpha + 1 / (n + 1)
    when the scores have no ties), in expectation over the calibration draw."""
    return aps_scores(probs) <= threshold


def conformal_summary(probs_cal, y_cal, probs_test, y_test, *, alpha: float) -> dict:
    """APS fitted on the calibration rows, scored on the test rows: coverage, mean set size, the threshold,
    and the number of calibration rows."""
    q = aps_threshold(probs_cal, y_cal, alpha=alpha)
    p, y = check_probabilities(probs_test, y_test)
    sets = aps_sets(p, q)  # (n, K)
    return {"coverage": float(sets[np.arange(len(y)), y].mean()), "mean_set_size": float(sets.sum(axis=1).mean()),
            "threshold": q, "n_calibration": int(len(np.asarray(y_cal)))}


# ------------------------------------------------------------------------------------------------ all of it
def calibration_block(val_logits, y_val, test_logits, y_test, *, bins: int = 15, alpha: float = 0.1,
                      baselines: dict | None = None) -> tuple[dict, dict]:
    """Everything a classifier's evaluation reports about its probabilities, fitted on validation rows and
    scored on test rows: ECE and NLL before and after temperature scaling, T, accuracy both ways (equal: the
    argmax does not move), and APS sets on the temperature-scaled probabilities. ``baselines``:
    {name: (validation probs, validation labels, test probs in the order of ``y_test``)}, each scored with APS
    at the same alpha on its own probabilities. Returns (the metrics block, {"raw" / "temperature": the test
    reliability bins})."""
    alpha = _check_alpha(alpha)
    t = fit_temperature(val_logits, y_val)
    probs = {"raw": softmax(test_logits), "temperature": softmax(test_logits, t)}  # (n, K) each
    y_test = _labels(y_test, *probs["raw"].shape)
    conformal = {"alpha": alpha, "method": "APS, non-randomised, calibrated on validation",
                 "model": conformal_summary(softmax(val_logits, t), y_val, probs["temperature"], y_test, alpha=alpha)}
    for name, (pv, yv, pt) in (baselines or {}).items():
        conformal[name] = conformal_summary(pv, yv, pt, y_test, alpha=alpha)
    block = {"ece": {k: expected_calibration_error(p, y_test, bins=bins) for k, p in probs.items()},
             "nll": {k: nll(p, y_test) for k, p in probs.items()},
             "accuracy": {k: float(np.mean(p.argmax(axis=1) == y_test)) for k, p in probs.items()},
             "temperature": t, "bins": bins, "fitted_on": "validation", "conformal": conformal}
    return block, {k: reliability_bins(p, y_test, bins=bins) for k, p in probs.items()}


# ------------------------------------------------------------------------------------- what predict applies
def predict_calibration(val_logits, y_val, temperature: float, *, levels=SET_LEVELS) -> dict:
    """What ``r2n2 predict`` applies to a classifier: the temperature (fitted on validation by
    :func:`calibration_block`) and, per coverage level, the split-conformal APS threshold on the validation rows'
    temperature-scaled probabilities (:func:`aps_threshold`; None where the rows are too few for that level: every
    label). The threshold at 0.90 is the one the report's 90 % sets use. The evaluate stage stores it beside the
    model's sha256 (``r2n2.cases.base.write_predict_calibration``)."""
    probs = softmax(val_logits, temperature)  # (n, K)
    thresholds = {}
    for level in levels:
        q = aps_threshold(probs, y_val, alpha=round(1 - level, 10))
        thresholds[f"{level:.2f}"] = q if math.isfinite(q) else None
    return {"temperature": float(temperature), "fitted_on": "validation", "n_calibration": int(len(probs)),
            "conformal": {"method": "APS, non-randomised, on the temperature-scaled probabilities",
                          "thresholds": thresholds}}


def set_threshold(block: dict, level: float) -> float:
    """The APS threshold ``block`` (:func:`predict_calibration`'s) holds for coverage ``level``; +inf (every
    label) where validation was too small; a ValueError naming the levels held for any other level."""
    held = block["conformal"]["thresholds"]
    key = f"{level:.2f}"
    if key not in held or abs(float(key) - level) > 1e-9:
        raise ValueError(f"sets are calibrated at the levels {min(held)} to {max(held)} in steps of 0.01, not {level}")
    q = held[key]
    return float("inf") if q is None else float(q)


def plot_reliability(curves: dict[str, list[dict]], path, *, title: str):
    """Reliability diagram: each bin's accuracy against its mean confidence, one line per curve (e.g. raw and
    temperature-scaled), the diagonal a calibrated classifier follows, and below it the rows per bin."""
    from matplotlib.figure import Figure

    from .plots import save_figure  # pandas and matplotlib: only the reliability plot

    fig = Figure(figsize=(6.5, 7))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="0.5", lw=0.8, ls="--", label="calibrated")
    names = list(curves)
    for i, (name, rows) in enumerate(curves.items()):
        used = [r for r in rows if r["count"]]
        top.plot([r["confidence"] for r in used], [r["accuracy"] for r in used], "o-", color=f"C{i}", ms=4,
                 label=name)
        width = (rows[0]["bin_high"] - rows[0]["bin_low"]) / len(names)
        bottom.bar([r["bin_low"] + i * width for r in rows], [r["count"] for r in rows], width=width, align="edge",
                   color=f"C{i}", alpha=0.8, label=name)
    top.set(title=title, ylabel="accuracy in bin", xlim=(0, 1), ylim=(0, 1))
    top.legend(loc="upper left")
    bottom.set(xlabel="confidence (top-label probability)", ylabel="rows")
    return save_figure(fig, path)
