"""Champion / challenger promotion on fresh data: both models scored on one window neither trained on, and
the challenger kept out only if a paired test finds it worse than the champion beyond a stated tolerance.

Forecasts: one-sided Diebold-Mariano on squared errors (statsmodels ``diebold_mariano_test``, HAC variance,
Harvey correction). ``tolerance`` is relative: the challenger's MSE may exceed (1 + tolerance) x the champion's
before it counts as worse; it enters the loss differential d_t = e_chal^2 - (1 + tolerance) e_champ^2.
Classifiers: paired bootstrap (``scipy.stats.bootstrap``, resampling texts with both models' predictions
together) of the macro-F1 difference; ``tolerance`` is in macro-F1 points. Bootstrap rather than McNemar
because the project selects sentiment models on macro-F1, which McNemar (accuracy only) does not test, and
because a tolerance margin fits a bootstrap directly.

The null hypothesis is "the challenger is not worse"; it is refused only when that is rejected at ``alpha``,
so an equal challenger is promoted (a fresh model on fresher data is preferred when the data cannot tell).

The benchmark leg (``benchmark_pred``, optional): the challenger must also not be worse than the naive benchmark
(random walk or expanding mean; texts: majority or TF-IDF) by more than ``benchmark_tolerance``, a relative margin
on the loss (forecasts: MSE; classifiers: error rate), with the same one-sided Diebold-Mariano test on the loss
differential d_t = loss_chal - (1 + benchmark_tolerance) loss_bench (0/1 losses for a classifier: the DM
statistic of a 0/1 differential is the paired test of error rates). Default 0.0: the benchmark costs nothing,
so a model the data show to be worse than it is not worth deploying at any margin; "up to noise" is what the
one-sided test at ``alpha`` already allows. Without ``benchmark_pred`` the decision and the returned dict are
exactly those of the champion leg alone. ``gate_power`` measures both legs on planted challengers.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["decide_promotion", "gate_power"]

_KINDS = ("forecast", "classifier")


def _bound(v: object) -> str | int:
    """A window bound as JSON: ISO date for anything date-like, int for an arrival index, else the string."""
    if isinstance(v, (bool, np.bool_)):
        raise DataError(f"A promotion window bound must be a date or an arrival index, got {v!r}.")
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (_dt.date, np.datetime64)) or hasattr(v, "to_pydatetime"):
        import pandas as pd

        return pd.Timestamp(v).date().isoformat()
    if isinstance(v, str):
        return v
    raise DataError(f"A promotion window bound must be a date or an arrival index, got {str(v)[:80]!r}.")


def _window(window: Mapping) -> dict:
    if not isinstance(window, Mapping) or not {"start", "end"} <= set(window):
        raise DataError(f"The promotion window must be a mapping with 'start' and 'end', got {str(window)[:80]!r}.")
    start, end = _bound(window["start"]), _bound(window["end"])
    if type(start) is type(end) and start > end:
        raise DataError(f"The promotion window starts after it ends ({start} > {end}).")
    return {"start": start, "end": end}


def _f(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _forecast_scores(y: np.ndarray, pred: np.ndarray) -> dict:
    e = y - pred
    return {"rmse": _f(np.sqrt(np.mean(e ** 2))), "mae": _f(np.mean(np.abs(e))), "n": int(len(y))}


def _macro_f1(y: np.ndarray, pred: np.ndarray, n_classes: int, axis: int = -1) -> np.ndarray:
    """Macro-F1 over classes 0..n_classes-1 along ``axis`` (vectorised for the bootstrap); a class absent from
    both y and pred scores 0, as scikit-learn's f1_score(labels=..., zero_division=0) does."""
    f1 = 0.0
    for k in range(n_classes):
        tp = np.sum((y == k) & (pred == k), axis=axis)
        wrong = np.sum((y == k) != (pred == k), axis=axis)  # false positives + false negatives
        den = 2 * tp + wrong
        f1 = f1 + np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)
    return f1 / n_classes


def _classifier_scores(y: np.ndarray, pred: np.ndarray, n_classes: int) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {"macro_f1": float(f1_score(y, pred, average="macro", labels=list(range(n_classes)), zero_division=0)),
            "accuracy": float(accuracy_score(y, pred)), "n": int(len(y))}


def _dm_one_sided(y: np.ndarray, champ: np.ndarray, chal: np.ndarray, tolerance: float, horizon: int) -> tuple:
    """One-sided DM p-value for H1 'challenger's MSE > (1 + tolerance) x champion's'."""
    from scipy.stats import t as student_t
    from statsmodels.tsa.stattools import diebold_mariano_test

    a, b = y - chal, math.sqrt(1.0 + tolerance) * (y - champ)
    d = a ** 2 - b ** 2
    if not np.any(d):
        return None, 1.0  # identical losses: nothing says the challenger is worse
    dm = diebold_mariano_test(np.zeros_like(y), a, b, criterion="mse", harvey_adj=True, horizon=horizon)
    stat = float(dm.statistic)
    if not math.isfinite(stat):  # zero variance of a non-zero differential: worse (or better) at every step
        return None, 0.0 if d.mean() > 0 else 1.0
    return stat, float(student_t.sf(stat, df=len(y) - 1))  # Harvey's correction reads t with T - 1 df


def _bootstrap_one_sided(y, champ, chal, tolerance: float, n_classes: int, n_resamples: int, seed: int) -> tuple:
    """Paired bootstrap of macro-F1(challenger) - macro-F1(champion) + tolerance; p = share of resamples in which
    the challenger is not worse (percentile test: p < alpha iff the one-sided upper bound is below 0)."""
    from scipy.stats import bootstrap

    def diff(y, a, b, axis=-1):
        return _macro_f1(y, b, n_classes, axis) - _macro_f1(y, a, n_classes, axis) + tolerance

    observed = float(diff(y, champ, chal))
    res = bootstrap((y, champ, chal), diff, paired=True, vectorized=True, n_resamples=n_resamples, batch=250,
                    method="percentile", rng=np.random.default_rng(seed))
    dist = res.bootstrap_distribution
    return observed, float((1 + np.count_nonzero(dist >= 0)) / (1 + len(dist)))


def _benchmark_leg(y, chal, bench, *, kind: str, alpha: float, tolerance: float, horizon: int, score) -> dict:
    """One-sided DM test of 'challenger's loss > (1 + tolerance) x the benchmark's' (squared or 0/1 losses)."""
    if kind == "forecast":
        stat, p = _dm_one_sided(y, bench, chal, tolerance, horizon)
        lc, lb, loss = float(np.mean((y - chal) ** 2)), float(np.mean((y - bench) ** 2)), "mse"
    else:
        ec, eb = (chal != y).astype(float), (bench != y).astype(float)
        # the DM machinery on squared errors of 0/1 "residuals" is the paired test of error rates
        stat, p = _dm_one_sided(np.zeros_like(ec), -eb, -ec, tolerance, horizon)
        lc, lb, loss = float(ec.mean()), float(eb.mean()), "error_rate"
    return {"id": None, **score(bench), "loss": loss, "challenger_loss": lc, "benchmark_loss": lb,
            "tolerance": tolerance, "passed": bool(p >= alpha),
            "test": {"name": f"Diebold-Mariano, one-sided (challenger {loss} > (1 + tolerance) x benchmark's)",
                     "p_value": p, "statistic": None if stat is None else _f(stat)}}


def _check_gate(kind: str, alpha: float, tolerance: float, benchmark_tolerance: float) -> None:
    if kind not in _KINDS:
        raise ConfigError(f"Promotion kind must be 'forecast' or 'classifier', got {str(kind)[:80]!r}.")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie strictly between 0 and 1, got {alpha!r}.")
    if not (tolerance >= 0.0 and math.isfinite(tolerance)):
        raise ConfigError(f"tolerance must be a finite number >= 0, got {tolerance!r}.")
    if not (benchmark_tolerance >= 0.0 and math.isfinite(benchmark_tolerance)):
        raise ConfigError(f"benchmark_tolerance must be a finite number >= 0, got {benchmark_tolerance!r}.")


def _paired(actual, preds: Mapping, win: dict) -> tuple[np.ndarray, dict]:
    """(actual values, {who: predictions} for each model given), each flat and row for row with the actuals."""
    y = np.asarray(actual).ravel()
    if len(y) == 0:
        raise DataError(f"The promotion window {win['start']} .. {win['end']} holds no scored rows, so champion and "
                        "challenger cannot be compared; score them on a window after both training cut-offs.")
    arrays = {}
    for who, p in preds.items():
        if p is None:
            continue
        p = np.asarray(p).ravel()
        if p.shape != y.shape:
            raise DataError(f"The {who}'s predictions ({len(p)}) and the actual values ({len(y)}) must pair row by "
                            f"row on the promotion window.")
        arrays[who] = p
    if "challenger" not in arrays:
        raise DataError("There are no challenger predictions to decide on.")
    return y, arrays


def _typed(kind: str, y: np.ndarray, arrays: dict, n_classes: int | None):
    """The arrays as floats (forecast) or class ids (classifier), checked, with the kind's scorer:
    ``(y, arrays, n_classes, score, metric, fmt)``."""
    if kind == "forecast":
        y = y.astype(float)
        arrays = {who: a.astype(float) for who, a in arrays.items()}
        if not all(np.all(np.isfinite(a)) for a in (y, *arrays.values())):
            raise DataError("The promotion window holds missing or infinite actual values or predictions; "
                            "drop those rows before comparing the models.")
        return y, arrays, n_classes, (lambda p: _forecast_scores(y, p)), "rmse", "{:.4g}"
    for a in (y, *arrays.values()):
        if not np.issubdtype(a.dtype, np.integer) and not np.all(np.asarray(a, float) == np.round(a)):
            raise DataError(f"Classifier promotion needs class ids; got {str(a[:6].tolist())[:80]}.")
    y = y.astype(np.int64)
    arrays = {k: v.astype(np.int64) for k, v in arrays.items()}
    n = int(n_classes or max(int(a.max()) for a in (y, *arrays.values())) + 1)
    return y, arrays, n, (lambda p: _classifier_scores(y, p, n)), "macro_f1", "{:.4f}"


def _champion_test(kind: str, y, arrays: dict, tolerance: float, horizon: int, n_classes, n_resamples: int,
                   seed: int) -> tuple:
    """The one-sided test of the challenger against the champion: (statistic, p, test's name, tolerance words)."""
    if kind == "forecast":
        stat, p = _dm_one_sided(y, arrays["champion"], arrays["challenger"], tolerance, horizon)
        return (stat, p, "Diebold-Mariano, one-sided (challenger MSE > (1 + tolerance) x champion MSE), HAC, "
                "Harvey-corrected", f"a {tolerance:.0%} tolerance on MSE")
    stat, p = _bootstrap_one_sided(y, arrays["champion"], arrays["challenger"], tolerance, n_classes, n_resamples,
                                   seed)
    return (stat, p, "paired bootstrap of the macro-F1 difference, one-sided (challenger worse by more than "
            "tolerance)", f"a tolerance of {tolerance:g} macro-F1")


def decide_promotion(*, actual, champion_pred, challenger_pred, kind: str, window: Mapping, alpha: float = 0.05,
                     tolerance: float = 0.0, champion_id: str | None = None, challenger_id: str | None = None,
                     horizon: int = 1, n_classes: int | None = None, n_resamples: int = 2000,
                     seed: int = 0, benchmark_pred=None, benchmark_tolerance: float = 0.0,
                     benchmark_id: str | None = None) -> dict:
    """Decide whether the challenger replaces the champion, from both models' predictions on one window that
    neither trained on (the caller guarantees that). ``champion_pred=None`` means there is no champion yet.

    Returns a JSON-ready dict: ``window`` (ISO dates or arrival indices), ``champion`` and ``challenger``
    (id and scores; the champion is None without one), ``test`` (name, p_value, statistic), ``alpha``,
    ``tolerance``, ``promoted`` and a one-sentence ``reason`` with the numbers. With ``benchmark_pred`` (the naive
    benchmark's predictions on the same rows, ``benchmark_id`` its name) it also holds ``benchmark`` (id, scores,
    test, tolerance, ``passed``) and the challenger is promoted only if both legs pass."""
    _check_gate(kind, alpha, tolerance, benchmark_tolerance)
    win = _window(window)
    y, arrays = _paired(actual, {"challenger": challenger_pred, "champion": champion_pred,
                                 "benchmark": benchmark_pred}, win)
    y, arrays, n_classes, score, metric, fmt = _typed(kind, y, arrays, n_classes)
    chal = {"id": challenger_id, **score(arrays["challenger"])}
    span = f"{win['start']} .. {win['end']}, n={len(y)}"
    out = {"window": win, "kind": kind, "metric": metric, "alpha": alpha, "tolerance": tolerance,
           "challenger": chal}
    name_c = f"challenger {challenger_id!r}" if challenger_id else "the challenger"
    bench = None
    if "benchmark" in arrays:
        bench = _benchmark_leg(y, arrays["challenger"], arrays["benchmark"], kind=kind, alpha=alpha,
                               tolerance=benchmark_tolerance, horizon=horizon, score=score)
        bench["id"] = benchmark_id
        out["benchmark"] = bench
    name_b = f"the benchmark {benchmark_id!r}" if benchmark_id else "the naive benchmark"
    bench_why = "" if bench is None else (
        f"; against {name_b} ({bench['loss']} {bench['challenger_loss']:.4g} vs {bench['benchmark_loss']:.4g}) the "
        f"test finds it {'not ' if bench['passed'] else ''}worse beyond a {bench['tolerance']:.0%} tolerance "
        f"(p = {bench['test']['p_value']:.3g} {'>=' if bench['passed'] else '<'} {alpha:g})")
    if "champion" not in arrays:
        ok = bench is None or bench["passed"]
        out.update(champion=None, test={"name": None, "p_value": None, "statistic": None}, promoted=bool(ok),
                   reason=(f"Promoted {name_c} ({metric} {fmt.format(chal[metric])} on {span}) because there is "
                           f"no champion to compare it with{bench_why}." if ok else
                           f"Refused {name_c} ({metric} {fmt.format(chal[metric])} on {span}) although there is no "
                           f"champion{bench_why}."))
        return out
    champ = {"id": champion_id, **score(arrays["champion"])}
    stat, p, test, tol = _champion_test(kind, y, arrays, tolerance, horizon, n_classes, n_resamples, seed)
    if bench is not None and not bench["passed"]:
        # the champion on the same rows: when it is worse than the benchmark too, the gate still keeps it (the rule
        # is pre-registered), and says so: serving the benchmark itself would be better than either model
        champ_bench = _benchmark_leg(y, arrays["champion"], arrays["benchmark"], kind=kind, alpha=alpha,
                                     tolerance=benchmark_tolerance, horizon=horizon, score=score)
        bench["champion_passed"] = bool(champ_bench["passed"])
        bench["champion_p_value"] = champ_bench["test"]["p_value"]
        if not champ_bench["passed"]:
            bench_why += (f"; the champion is worse than {name_b} as well (p = {champ_bench['test']['p_value']:.3g}): "
                          f"{name_b} itself would serve better than either")
    promoted = p >= alpha and (bench is None or bench["passed"])
    name_k = f"champion {champion_id!r}" if champion_id else "the champion"
    nums = f"{metric} {fmt.format(chal[metric])} vs {fmt.format(champ[metric])} on {span}"
    champ_ok = p >= alpha
    reason = (f"Promoted {name_c} over {name_k} ({nums}): the test finds it not worse beyond {tol} "
              f"(p = {p:.3g} >= {alpha:g}){bench_why}." if promoted else
              f"Kept {name_k} over {name_c} ({nums}): the test finds the challenger worse beyond {tol} "
              f"(p = {p:.3g} < {alpha:g}){bench_why}." if not champ_ok else
              f"Kept {name_k} over {name_c} ({nums}): the test finds it not worse than the champion beyond {tol} "
              f"(p = {p:.3g} >= {alpha:g}){bench_why}.")
    out.update(champion=champ, test={"name": test, "p_value": p, "statistic": None if stat is None else _f(stat)},
               promoted=bool(promoted), reason=reason)
    return out


# --- the gate's power on planted challengers ---------------------------------------------------------------------

def _local_scale(e: np.ndarray, span: int = 21) -> np.ndarray:
    """sqrt of a centred rolling mean of the champion's squared error (``span`` rows), rescaled so that its
    square averages to the champion's MSE: planted noise follows the champion's own volatility."""
    import pandas as pd

    s2 = pd.Series(e ** 2).rolling(span, center=True, min_periods=1).mean().to_numpy()
    s2 = s2 * (np.mean(e ** 2) / max(np.mean(s2), 1e-300))
    return np.sqrt(s2)


def _flip(pred: np.ndarray, frac: float, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """``pred`` with round(frac x n) rows, chosen at random, moved to a uniformly drawn other class."""
    out = pred.copy()
    idx = rng.choice(len(pred), int(round(frac * len(pred))), replace=False)
    out[idx] = (pred[idx] + rng.integers(1, n_classes, len(idx))) % n_classes
    return out


def _power_inputs(actual, champion_pred, benchmark_pred, *, kind: str, worse, equal_noise: float, slice_len: int,
                  n_sim: int) -> tuple:
    """``gate_power``'s arguments checked: (actual, champion's, benchmark's or None) as flat arrays of the kind."""
    if kind not in _KINDS:
        raise ConfigError(f"Promotion kind must be 'forecast' or 'classifier', got {str(kind)[:80]!r}.")
    if not (isinstance(n_sim, int) and n_sim >= 20):
        raise ConfigError(f"n_sim must be an integer >= 20, got {n_sim!r}.")
    top_level = math.inf if kind == "forecast" else 1.0  # MSE may grow without bound; at most all rows flip
    if not all(0.0 < w <= top_level and math.isfinite(w) for w in (*worse, equal_noise)):
        raise ConfigError(f"Planted levels must be > 0 (classifiers: a share <= 1), got worse={worse!r}, "
                          f"equal_noise={equal_noise!r}.")
    dtype = float if kind == "forecast" else np.int64
    y, f = np.asarray(actual).ravel().astype(dtype), np.asarray(champion_pred).ravel().astype(dtype)
    b = None if benchmark_pred is None else np.asarray(benchmark_pred).ravel().astype(dtype)
    if f.shape != y.shape or (b is not None and b.shape != y.shape):
        raise DataError("The actual values, the champion's and the benchmark's predictions must pair row by row.")
    if not (isinstance(slice_len, int) and 2 <= slice_len <= len(y)):
        raise ConfigError(f"slice_len must be an integer between 2 and the {len(y)} rows given, got {slice_len!r}.")
    return y, f, b


def _required_slice(y, f, plant, *, kind: str, tolerance: float, alpha: float, power: float) -> int | None:
    """The variance formula for a 10 % worse challenger (champion leg), averaged over 20 plantings of the whole
    stretch: the rows it needs to be refused with probability ``power``."""
    from scipy.stats import norm

    whole = slice(0, len(y))
    if kind == "forecast":
        ds = [(y - plant(whole, 0.1)) ** 2 - (1 + tolerance) * (y - f) ** 2 for _ in range(20)]
    else:
        ds = [(plant(whole, 0.1) != y).astype(float) - (f != y) for _ in range(20)]
    mu, sd = float(np.mean([d.mean() for d in ds])), float(np.mean([d.std(ddof=1) for d in ds]))
    z = norm.ppf(1 - alpha) + norm.ppf(power)
    return math.ceil((z * sd / mu) ** 2) if mu > 0 else None


def gate_power(actual, champion_pred, benchmark_pred=None, *, kind: str = "forecast",
               worse: tuple[float, ...] = (0.05, 0.1, 0.2), slice_len: int = 21, n_sim: int = 400,
               equal_noise: float = 0.1, alpha: float = 0.05, tolerance: float = 0.0,
               benchmark_tolerance: float = 0.0, power: float = 0.8, seed: int = 0, n_classes: int | None = None,
               n_resamples: int = 2000) -> dict:
    """The refusal rates of the real gate (``decide_promotion``) for challengers planted from a real champion.

    ``actual`` / ``champion_pred`` (/ ``benchmark_pred``) are a long stretch of the champion's out-of-sample
    predictions. Each of ``n_sim`` draws takes a random run of ``slice_len`` consecutive rows (dependence kept)
    and plants, on it, for each level w in ``worse``:

    - forecasts: challenger = champion + sqrt(w) x s_t x N(0, 1), s_t the champion's local RMS error
      (``_local_scale``), so the challenger's expected MSE is (1 + w) x the champion's;
    - classifiers: challenger = champion with a share w of its predictions moved to another class.

    "Equal" challenger: not the champion itself (identical losses make every test return p = 1, which measures
    nothing), but a twin: champion and challenger are both the real champion plus independent planted noise of the
    same size (``equal_noise``: MSE + 10 %, or 10 % flipped). They are exchangeable, so the null holds exactly and
    their disagreement is that of two retrained models; its promotion rate should be about 1 - alpha.

    The benchmark leg runs when ``benchmark_pred`` is given (refusals are split by leg). ``required_slice_len``
    is the slice a 10 % worse challenger needs to be refused with probability ``power`` by the champion leg,
    from the variance formula n = ((z_{1-alpha} + z_power) sd(d) / mean(d))^2 on the per-row loss differential
    d over the whole stretch (forecasts: squared errors, as the DM test uses; classifiers: 0/1 errors, an
    approximation, since the gate tests macro-F1 by bootstrap). Returns a JSON-ready dict with a ``sentence``."""
    y, f, b = _power_inputs(actual, champion_pred, benchmark_pred, kind=kind, worse=worse, equal_noise=equal_noise,
                            slice_len=slice_len, n_sim=n_sim)
    rng = np.random.default_rng(seed)
    if kind == "forecast":
        scale = _local_scale(y - f)

        def plant(sl, w):
            return f[sl] + np.sqrt(w) * scale[sl] * rng.standard_normal(sl.stop - sl.start)
    else:
        n_classes = int(n_classes or max(int(y.max()), int(f.max())) + 1)

        def plant(sl, w):
            return _flip(f[sl], w, n_classes, rng)

    def gate(sl, champ, chal):
        d = decide_promotion(actual=y[sl], champion_pred=champ, challenger_pred=chal, kind=kind,
                             window={"start": sl.start, "end": sl.stop - 1}, alpha=alpha, tolerance=tolerance,
                             n_classes=n_classes, n_resamples=n_resamples, seed=int(rng.integers(2 ** 31)),
                             benchmark_pred=None if b is None else b[sl], benchmark_tolerance=benchmark_tolerance)
        by_champ = d["test"]["p_value"] < alpha
        by_bench = "benchmark" in d and not d["benchmark"]["passed"]
        return not d["promoted"], by_champ, by_bench

    levels = [("equal", equal_noise), *[(w, w) for w in worse]]
    counts = {lev: np.zeros(3) for lev, _ in levels}
    for start in rng.integers(0, len(y) - slice_len + 1, n_sim):
        sl = slice(int(start), int(start) + slice_len)
        for lev, w in levels:
            champ = plant(sl, w) if lev == "equal" else f[sl]
            counts[lev] += gate(sl, champ, plant(sl, w))

    def rates(c):
        r = c / n_sim
        return {"refused": float(r[0]), "refused_by_champion_leg": float(r[1]),
                "refused_by_benchmark_leg": float(r[2]) if b is not None else None,
                "se": float(math.sqrt(r[0] * (1 - r[0]) / n_sim))}

    need = _required_slice(y, f, plant, kind=kind, tolerance=tolerance, alpha=alpha, power=power)
    eq = rates(counts["equal"])
    out = {"kind": kind, "slice_len": slice_len, "n_sim": n_sim, "alpha": alpha, "tolerance": tolerance,
           "benchmark_tolerance": benchmark_tolerance if b is not None else None, "rows": int(len(y)),
           "planted": ("challenger MSE (1 + w) x the champion's (noise scaled to its local error)" if kind == "forecast"
                       else "a share w of the champion's predictions moved to another class"),
           "equal": {"noise": equal_noise, "promoted": 1.0 - eq["refused"], **eq},
           "worse": [{"worse": w, **rates(counts[w])} for w in worse],
           "required_slice_len": {"worse": 0.1, "power": power, "n": need,
                                  "method": "variance formula ((z_(1-alpha) + z_power) sd(d) / mean(d))^2, "
                                            + ("squared-error" if kind == "forecast" else "0/1-error (approx.)")
                                            + " differential"}}
    top = max(worse)
    r_top = next(r for r in out["worse"] if r["worse"] == top)["refused"]
    out["sentence"] = (f"On {slice_len}-row slices this gate refuses a {top:.0%} worse challenger with "
                       f"{r_top:.0%} probability and promotes an equal one with {out['equal']['promoted']:.0%}; "
                       f"a 10% worse one needs about {need} rows to be refused {power:.0%} of the time.")
    return out
