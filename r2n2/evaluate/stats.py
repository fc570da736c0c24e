"""Paired comparisons of two models on the same test set, each returned as one plain dict.

Every comparison has the keys of :data:`COMPARISON_KEYS`: ``a`` and ``b`` (names), ``metric`` (what ``diff`` is),
``diff`` (``metric(a) - metric(b)``, or the mean per-observation difference for loss differentials), a 95 %
interval ``ci_low``/``ci_high`` of ``diff``, ``p_value``, ``test`` (the test's name), ``sided`` ("two-sided" or
"one-sided": of the p-value and the interval; a one-sided interval has ``None`` on its open side) and ``mde``,
the minimum detectable effect: the smallest ``|diff|`` the test detects with 80 % power at alpha 0.05 at its
sample size, in the units of ``diff`` (:func:`minimum_detectable_effect`). Whether a lower or a higher ``diff``
favours ``a`` depends on the metric; :func:`verdict` takes that as an argument and calls a comparison "tie"
whenever its interval covers 0 -- and a tie then reads "no difference larger than ``mde`` was there to see".

Tests come from statsmodels (Diebold-Mariano, McNemar, HAC/Newey-West standard errors) and arch (bootstraps).
Clark-West is written here on top of statsmodels' HAC regression, and the grouped (cluster) bootstrap of a
classifier metric on arch's IID bootstrap of group indices: neither library ships them. The Sharpe-ratio tests
(Lo 2002; Ledoit & Wolf 2008) live with the strategies, in :mod:`r2n2.evaluate.trading`.

**The verdict convention: a comparison's interval and its p-value come from one test and cannot disagree.** At
level ``1 - alpha`` (alpha = 0.05), "the interval excludes 0" and "p <= alpha" are the same event:

- Tests with a standard error (Diebold-Mariano, Clark-West, Newey-West, Ledoit-Wolf, the paired t over seeds):
  the interval is ``diff +- q * se`` with the quantile ``q`` of the very distribution the p-value is read from
  (one-sided tests: the one-sided bound), so it is the set of nulls the test does not reject.
- Bootstraps (block, paired, grouped, two-way; :func:`bootstrap_interval`): with R finite replications sorted,
  ``r = floor((R + 1) alpha / 2)``, the percentile interval is the r-th smallest and the r-th largest replication
  (Davison & Hinkley 1997, eq. 5.18), and the two-sided p-value of H0: diff = 0 counts replications on each side
  of 0 in the same units: ``p = min(1, 2 min(1 + #{d <= 0}, 1 + #{d >= 0}) / (R + 1))``. Then p <= alpha exactly
  when fewer than r replications lie on one side of 0, which is exactly when the interval excludes 0.
- McNemar: the exact conditional binomial test of the discordant pairs (statsmodels, ``exact=True``), and as its
  interval the Clopper-Pearson interval of the discordant split (the exact test inverted), mapped to the
  accuracy difference; no chi-square approximation beside an interval from another formula.
- A differential without variance (identical inputs) has p = 1 and the interval [0, 0]; a constant non-zero
  differential has no sampling distribution: p and interval are None, the verdict "tie" (nothing to test).

:func:`verdict` says "better" / "worse" only when the interval lies wholly on one side of 0 **and** the p-value
-- ``p_adjusted`` when the comparison carries one -- is at most alpha; tests/test_engine.py checks on a grid of
synthetic differentials that no test has an interval excluding 0 with p > alpha, or the reverse. Families of
comparisons and their Holm adjustment: :mod:`r2n2.evaluate.engine`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError

__all__ = ["COMPARISON_KEYS", "ALPHA", "comparison", "degenerate", "bootstrap_interval", "significant",
           "default_lags", "diebold_mariano", "clark_west", "rmse_ratio_bootstrap", "classifier_bootstrap",
           "mcnemar_test", "rank_ic_difference", "hac_mean", "macro_f1", "verdict", "seed_summary",
           "seed_difference", "minimum_detectable_effect", "oos_r2_mde", "mde_block", "SEED_TESTS", "two_way_bootstrap"]

COMPARISON_KEYS = ("a", "b", "metric", "diff", "ci_low", "ci_high", "p_value", "test", "sided", "mde")
ALPHA, POWER = 0.05, 0.8  # the size and power every ``mde`` is stated at
SEED_TESTS = ("paired_t_seeds", "two_way_bootstrap_seeds_items")  # comparisons across seeds, not on one model


def _num(v) -> float | None:
    """A JSON-safe float: None for NaN, inf or missing."""
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) or math.isinf(v) else v


def comparison(a: str, b: str, metric: str, diff, lo, hi, p, test: str, *, sided: str = "two-sided",
               mde=None) -> dict:
    """One comparison dict with the keys of :data:`COMPARISON_KEYS`, every number JSON-safe (None for NaN or
    inf): the one constructor every test here and in :mod:`r2n2.evaluate.trading` /
    :mod:`r2n2.evaluate.distribution` returns through."""
    return dict(zip(COMPARISON_KEYS, (a, b, metric, _num(diff), _num(lo), _num(hi), _num(p), test, sided,
                                      _num(mde))))


def minimum_detectable_effect(se: float | None, *, sided: str = "two-sided", alpha: float = ALPHA,
                              power: float = POWER, df: float | None = None) -> float | None:
    """The smallest true difference a test with standard error ``se`` detects with probability ``power`` at size
    ``alpha``: ``(q_{1-alpha/2} + q_{power}) * se`` for a two-sided test, ``(q_{1-alpha} + q_{power}) * se``
    for a one-sided one (normal quantiles; Student-t with ``df`` degrees of freedom when given). The usual
    power approximation (the far tail of a two-sided test is ignored); for a bootstrap pass the standard
    deviation of its replications. None without a positive standard error (identical inputs: nothing varies, so
    there is no power to state)."""
    from scipy import stats as st

    if se is None or not math.isfinite(se) or se <= 0:
        return None
    if sided not in ("two-sided", "one-sided"):
        raise DataError(f"sided must be 'two-sided' or 'one-sided', got {sided!r:.80}.")
    dist = st.norm if df is None else st.t(df)
    crit = 1 - alpha / 2 if sided == "two-sided" else 1 - alpha
    return float((dist.ppf(crit) + dist.ppf(power)) * se)


def _vectors(*arrays, names: Sequence[str], min_n: int = 2) -> list[np.ndarray]:
    """Flatten to 1-D float arrays of one common length, or raise a DataError naming the inputs."""
    out = [np.asarray(x, dtype=float).reshape(-1) for x in arrays]
    lengths = {len(x) for x in out}
    if len(lengths) != 1:
        shown = ", ".join(f"{n}={len(x)}" for n, x in zip(names, out))
        raise DataError(f"paired comparison needs equal-length inputs, got {shown[:80]}.")
    n = lengths.pop()
    if n < min_n:
        raise DataError(f"paired comparison needs at least {min_n} observations, got {n}.")
    if not all(np.isfinite(x).all() for x in out):
        raise DataError(f"paired comparison inputs ({', '.join(names)[:80]}) contain NaN or inf; "
                        "drop those rows first.")
    return out


def default_lags(n: int, horizon: int = 1) -> int:
    """statsmodels' diebold_mariano_test rule, ``max(horizon - 1, ceil(n ** (1/3)))``, so every HAC test in a
    report (here and in :mod:`r2n2.evaluate.trading`) uses the same bandwidth."""
    return int(max(horizon - 1, math.ceil(n ** (1 / 3))))


def hac_mean(x: np.ndarray, *, lags: int | None = None, horizon: int = 1) -> dict:
    """Mean of ``x`` with its Newey-West (Bartlett kernel, ``lags`` lags) standard error, from a statsmodels OLS
    on a constant (statsmodels' default: no degrees-of-freedom correction, so with 0 lags
    ``se = sqrt(sum((x - mean)^2)) / n``). Returns ``{"mean", "se", "tstat", "n", "lags"}``; ``lags`` defaults to
    ``max(horizon - 1, ceil(n ** (1/3)))`` as in statsmodels' Diebold-Mariano test."""
    from statsmodels.regression.linear_model import OLS

    x = np.asarray(x, dtype=float).reshape(-1)
    n = len(x)
    lags = default_lags(n, horizon) if lags is None else int(lags)
    mean = float(x.mean()) if n else float("nan")
    if n < 2:
        return {"mean": _num(mean), "se": None, "tstat": None, "n": n, "lags": lags}
    if np.ptp(x) == 0:  # constant series: zero variance, OLS would divide by zero
        return {"mean": mean, "se": 0.0, "tstat": None, "n": n, "lags": lags}
    res = OLS(x, np.ones_like(x)).fit(cov_type="HAC", cov_kwds={"maxlags": lags})
    se = float(res.bse[0])
    return {"mean": mean, "se": se, "tstat": mean / se if se > 0 else None, "n": n, "lags": lags}


def _interval(mean: float, se: float | None, q: float) -> tuple[float, float]:
    if se is None:
        return float("nan"), float("nan")
    return mean - q * se, mean + q * se


def degenerate(a: str, b: str, metric: str, mean, test: str, *, sided: str = "two-sided", mde=None) -> dict:
    """A differential without variance: identical inputs (mean 0) give p = 1 and the interval [0, 0] (for a
    one-sided test its bound 0); a constant non-zero difference has no sampling distribution, so no p-value and
    no interval (the verdict convention of the module docstring: neither may speak without the other)."""
    zero = mean is not None and mean == 0
    lo = 0.0 if zero and sided == "two-sided" else None
    return comparison(a, b, metric, mean, lo, 0.0 if zero else None, 1.0 if zero else None, test, sided=sided,
                      mde=mde)


def significant(p, alpha: float = ALPHA) -> bool:
    """``p <= alpha`` (a float tolerance of 1e-12, so a bootstrap p of exactly alpha, 2r / (R + 1), counts as the
    interval does); False for None."""
    return p is not None and math.isfinite(p) and p <= alpha + 1e-12


def diebold_mariano(y, pred_a, pred_b, *, a: str = "a", b: str = "b", horizon: int = 1, lags: int | None = None,
                    criterion: str | Callable = "mse", metric: str | None = None, level: float = 0.95) -> dict:
    """Diebold-Mariano test of equal accuracy (statsmodels, HAC variance, Harvey-Leybourne-Newbold small-sample
    adjustment, Student-t p-value). ``diff`` is the mean loss differential ``loss(a) - loss(b)`` (negative: a is
    more accurate) and the interval is ``diff +- t(n-1) * se`` with the same HAC standard error and Harvey
    factor as the test, so the interval excludes 0 exactly when p < 1 - level. ``criterion``: "mse", "mae" or
    any per-observation loss ``loss(y, f)`` statsmodels accepts (e.g. QLIKE; then name it with ``metric``;
    default ``<criterion>_loss_differential``)."""
    from scipy import stats as st
    from statsmodels.tsa.stattools import diebold_mariano_test

    y, fa, fb = _vectors(y, pred_a, pred_b, names=("y", a, b), min_n=3)
    n = len(y)
    lags = default_lags(n, horizon) if lags is None else int(lags)
    if callable(criterion):
        loss = criterion
    elif criterion in ("mse", "mae"):
        loss = {"mse": lambda t, f: np.square(t - f), "mae": lambda t, f: np.abs(t - f)}[criterion]
    else:
        raise DataError(f"diebold_mariano: criterion must be 'mse', 'mae' or a loss(y, f), got {criterion!r:.80}.")
    d = loss(y, fa) - loss(y, fb)
    h = hac_mean(d, lags=lags)
    metric = metric or f"{criterion}_loss_differential"
    if h["tstat"] is None:
        return degenerate(a, b, metric, h["mean"], "diebold_mariano", mde=minimum_detectable_effect(h["se"]))
    res = diebold_mariano_test(y, fa, fb, criterion=criterion, harvey_adj=True, horizon=horizon, lags=lags)
    se = h["se"] / float(res.harvey_adj_factor)  # Harvey's factor scales the statistic: divide the se by it
    q = st.t.ppf(0.5 + level / 2, df=n - 1)
    lo, hi = _interval(h["mean"], se, q)
    return comparison(a, b, metric, h["mean"], lo, hi, res.pvalue, "diebold_mariano",
                      mde=minimum_detectable_effect(se, df=n - 1))


def clark_west(y, pred_model, pred_bench, *, a: str = "model", b: str = "benchmark", horizon: int = 1,
               lags: int | None = None, level: float = 0.95) -> dict:
    """Clark-West (2007) test for a model ``a`` that nests the benchmark ``b`` (the zero forecast, the random
    walk, the expanding historical mean). With ``f_t = (y - b)^2 - [(y - a)^2 - (b - a)^2]``, H0: E[f] = 0
    against E[f] > 0 (the model is more accurate); t = mean(f) / HAC se, one-sided normal p-value. ``diff`` is
    ``-mean(f)``, the adjusted MSPE of ``a`` minus the MSPE of ``b`` (negative: a is better), and its interval is
    the matching **one-sided** ``level`` bound: ``ci_low`` is None (unbounded) and ``ci_high = diff + z_level *
    se``, so the interval excludes 0 exactly when p < 1 - level and :func:`verdict` can only say "better" or
    "tie" (the test has no alternative on the other side). ``sided`` is "one-sided"; ``mde`` is the one-sided
    ``(z_0.95 + z_0.8) * se``."""
    from scipy import stats as st

    y, fa, fb = _vectors(y, pred_model, pred_bench, names=("y", a, b), min_n=3)
    f = (y - fb) ** 2 - ((y - fa) ** 2 - (fb - fa) ** 2)  # (n,) adjusted MSPE differential
    h = hac_mean(f, lags=lags, horizon=horizon)
    diff = -h["mean"]
    mde = minimum_detectable_effect(h["se"], sided="one-sided")
    if h["tstat"] is None:
        return degenerate(a, b, "mse_adjusted", diff, "clark_west", sided="one-sided", mde=mde)
    p = st.norm.sf(h["tstat"])
    hi = diff + st.norm.ppf(level) * h["se"]
    return comparison(a, b, "mse_adjusted", diff, None, hi, p, "clark_west", sided="one-sided", mde=mde)


def bootstrap_interval(replications, *, level: float = 0.95, null: float = 0.0) -> tuple[float | None, float | None,
                                                                                         float | None]:
    """(lower, upper, p): THE bootstrap convention of the module docstring. With the R finite replications
    sorted and ``r = floor((R + 1) alpha / 2)``: the percentile interval is the r-th smallest and the r-th
    largest replication, and the two-sided p of H0: diff = ``null`` is ``min(1, 2 min(1 + #{d <= null},
    1 + #{d >= null}) / (R + 1))``, so ``p <= alpha`` exactly when the interval excludes ``null``. Fewer than
    ``2 / alpha - 1`` replications (r = 0): no interval (None), and p can never reach alpha."""
    d = np.sort(np.asarray(replications, dtype=float).reshape(-1))
    d = d[np.isfinite(d)]  # a replication can be undefined (e.g. a zero benchmark error)
    R = len(d)
    if R == 0:
        return None, None, None
    alpha = round(1 - level, 12)
    r = math.floor(round((R + 1) * alpha / 2, 9))
    k = min(int(np.sum(d <= null)), int(np.sum(d >= null)))
    p = min(1.0, 2 * (1 + k) / (R + 1))
    if r < 1:
        return None, None, p
    return float(d[r - 1]), float(d[R - r]), p


def _bootstrap_summary(bs, func: Callable, *, reps: int, level: float,
                       null: float) -> tuple[float, float, float, float]:
    """:func:`bootstrap_interval` of arch's bootstrap replications (``apply``: arch's ``conf_int`` does not hand
    back the replications) and the bootstrap standard error (sd of the replications, for the ``mde``)."""
    dist = bs.apply(func, reps=reps)[:, 0]
    dist = dist[np.isfinite(dist)]
    lo, hi, p = bootstrap_interval(dist, level=level, null=null)
    se = float(dist.std(ddof=1)) if len(dist) > 1 else float("nan")
    return lo, hi, p, se


def rmse_ratio_bootstrap(y, pred_a, pred_b, *, a: str = "a", b: str = "b", reps: int = 999, seed: int = 0,
                         block_size: float | None = None, method: str = "stationary", level: float = 0.95) -> dict:
    """Paired block bootstrap (arch StationaryBootstrap or CircularBlockBootstrap) of ``rmse(a) / rmse(b)``:
    the same resampled days for both forecasts, so their correlation is kept. ``diff`` is ``ratio - 1``
    (negative: a is more accurate), with the percentile interval and the two-sided p-value of H0: ratio = 1
    (:func:`bootstrap_interval`: they agree);
    ``mde`` from the bootstrap standard error. ``block_size`` defaults to arch's optimal_block_length of the
    squared-error differential."""
    from arch.bootstrap import CircularBlockBootstrap, StationaryBootstrap, optimal_block_length

    y, fa, fb = _vectors(y, pred_a, pred_b, names=("y", a, b), min_n=3)
    ea, eb = (y - fa) ** 2, (y - fb) ** 2
    if eb.sum() == 0:
        return comparison(a, b, "rmse_ratio_minus_1", None, None, None, None, f"{method}_bootstrap")
    if block_size is None:
        d = ea - eb
        col = "stationary" if method == "stationary" else "circular"
        block_size = float(optimal_block_length(d)[col].iloc[0]) if np.ptp(d) > 0 else 1.0
    cls = {"stationary": StationaryBootstrap, "circular": CircularBlockBootstrap}[method]
    size = block_size if method == "stationary" else max(1, int(round(block_size)))
    bs = cls(size, ea, eb, seed=seed)

    def ratio(sa, sb):
        den = sb.mean()
        return np.sqrt(sa.mean() / den) - 1 if den > 0 else np.nan

    diff = float(ratio(ea, eb))
    lo, hi, p, se = _bootstrap_summary(bs, ratio, reps=reps, level=level, null=0.0)
    return comparison(a, b, "rmse_ratio_minus_1", diff, lo, hi, p, f"{method}_bootstrap",
                       mde=minimum_detectable_effect(se))


def macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Macro-F1 over class ids ``0..k-1`` for integer arrays: equal to scikit-learn's
    ``f1_score(average="macro", labels=range(k), zero_division=0)`` (tested), without its per-call validation
    overhead, for inner loops (a bootstrap replication, a threshold grid)."""
    y, pred = np.asarray(y, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)  # = 2tp + fp + fn
    return float(np.mean(np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)))


def classifier_bootstrap(y, pred_a, pred_b, *, a: str = "a", b: str = "b", metric: str = "macro_f1",
                         n_classes: int | None = None, reps: int = 999, seed: int = 0, level: float = 0.95,
                         groups=None) -> dict:
    """Paired IID bootstrap (arch IIDBootstrap) of ``metric(a) - metric(b)`` over test examples, for integer
    class ids. ``metric`` is ``"macro_f1"`` or ``"accuracy"``; positive ``diff``: a is better. Percentile
    interval and the two-sided p-value of H0: diff = 0 by :func:`bootstrap_interval` (they agree), ``mde`` from
    the bootstrap standard error.

    ``groups`` (one label per example, e.g. near-duplicate keys): resample whole groups instead of examples,
    so that copies of one text, which are not independent draws, enter or leave a replication together (a
    cluster bootstrap). With every example its own group it equals the ungrouped bootstrap on the same seed.
    ``test`` is then "group_bootstrap"."""
    from arch.bootstrap import IIDBootstrap

    y, pa, pb = (np.asarray(v).reshape(-1) for v in (y, pred_a, pred_b))
    _vectors(y, pa, pb, names=("y", a, b), min_n=2)
    y, pa, pb = y.astype(np.int64), pa.astype(np.int64), pb.astype(np.int64)
    k = int(max(y.max(), pa.max(), pb.max()) + 1) if n_classes is None else int(n_classes)
    if metric not in ("macro_f1", "accuracy"):
        raise DataError(f"classifier_bootstrap: metric must be 'macro_f1' or 'accuracy', got {metric!r:.80}.")

    def from_counts(cm):  # (k*k,) confusion counts, rows true -> the metric
        cm = cm.reshape(k, k)
        tp = np.diag(cm).astype(float)
        if metric == "accuracy":
            return float(tp.sum() / cm.sum())
        denom = cm.sum(0) + cm.sum(1)
        return float(np.mean(np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)))

    def counts(t, p):
        return np.bincount(t * k + p, minlength=k * k)

    def diff_fn(t, p1, p2):
        return from_counts(counts(t, p1)) - from_counts(counts(t, p2))

    if groups is None:
        bs, fn, test = IIDBootstrap(y, pa, pb, seed=seed), diff_fn, "paired_bootstrap"
    else:
        g = np.asarray(groups).reshape(-1)
        if len(g) != len(y):
            raise DataError(f"classifier_bootstrap: groups must give one label per example, got {len(g)} for "
                            f"{len(y)} examples.")
        gid = pd.factorize(g)[0]  # (n,) group index 0..G-1
        n_groups = int(gid.max()) + 1
        ca = np.zeros((n_groups, k * k))  # (G, k*k) each group's confusion counts, for a and for b
        cb = np.zeros((n_groups, k * k))
        np.add.at(ca, (gid, y * k + pa), 1)
        np.add.at(cb, (gid, y * k + pb), 1)

        def fn(ids):  # resampled group indices -> the difference on their members
            w = np.bincount(ids, minlength=n_groups).astype(float)  # (G,) times each group was drawn
            return from_counts(w @ ca) - from_counts(w @ cb)

        bs, test = IIDBootstrap(np.arange(n_groups), seed=seed), "group_bootstrap"
    lo, hi, p, se = _bootstrap_summary(bs, fn, reps=reps, level=level, null=0.0)
    return comparison(a, b, metric, diff_fn(y, pa, pb), lo, hi, p, test, mde=minimum_detectable_effect(se))


def mcnemar_test(y, pred_a, pred_b, *, a: str = "a", b: str = "b", level: float = 0.95) -> dict:
    """Exact McNemar test (statsmodels, ``exact=True``: the binomial test of the discordant pairs, two-sided by
    doubling the smaller tail) of equal accuracy on paired predictions. ``diff`` is ``accuracy(a) -
    accuracy(b)`` = ``(n10 - n01) / n``; its interval inverts the same test: the Clopper-Pearson interval (the
    exact binomial's, statsmodels ``proportion_confint(method="beta")``) of ``n10 / (n10 + n01)``, mapped by
    ``(n10 + n01) / n * (2 pi - 1)`` (conditional on the number of discordant pairs), so it excludes 0 exactly
    when p <= 1 - level. ``mde`` from the Wald standard error of paired proportions (Agresti 2002, 10.1.2)."""
    from statsmodels.stats.contingency_tables import mcnemar
    from statsmodels.stats.proportion import proportion_confint

    y, pa, pb = (np.asarray(v).reshape(-1) for v in (y, pred_a, pred_b))
    _vectors(y, pa, pb, names=("y", a, b), min_n=1)
    ca, cb = pa == y, pb == y
    n = len(y)
    n10, n01 = int(np.sum(ca & ~cb)), int(np.sum(~ca & cb))  # discordant pairs: only a right, only b right
    table = [[int(np.sum(ca & cb)), n10], [n01, int(np.sum(~ca & ~cb))]]
    nd = n10 + n01
    diff = (n10 - n01) / n
    se = math.sqrt(max(nd - (n10 - n01) ** 2 / n, 0.0)) / n
    if nd == 0:  # no discordant pair: the two agree on every example
        return degenerate(a, b, "accuracy", diff, "mcnemar_exact")
    p = float(mcnemar(table, exact=True).pvalue)
    lo, hi = proportion_confint(n10, nd, alpha=1 - level, method="beta")  # Clopper-Pearson of n10 / nd
    return comparison(a, b, "accuracy", diff, nd / n * (2 * lo - 1), nd / n * (2 * hi - 1), p, "mcnemar_exact",
                      mde=minimum_detectable_effect(se))


def rank_ic_difference(ic_a: pd.Series, ic_b: pd.Series, *, a: str = "a", b: str = "b", horizon: int = 1,
                       lags: int | None = None, level: float = 0.95) -> dict:
    """Newey-West t-test of the mean daily rank-IC difference ``ic_a - ic_b`` (two daily IC series, as from
    :func:`r2n2.evaluate.metrics.daily_rank_ic`, aligned on their common dates with both defined). Positive
    ``diff``: a ranks better. Normal two-sided p-value and interval, ``mde`` from the same se; pass ``horizon``
    for overlapping multi-day returns (at least ``horizon - 1`` lags)."""
    from scipy import stats as st

    both = pd.concat([pd.Series(ic_a), pd.Series(ic_b)], axis=1, join="inner").dropna()
    if len(both) < 3:
        raise DataError(f"rank-IC difference of {a!r:.40} and {b!r:.40} needs at least 3 common dates with both "
                        f"ICs defined, got {len(both)}.")
    d = both.iloc[:, 0].to_numpy(float) - both.iloc[:, 1].to_numpy(float)
    h = hac_mean(d, lags=lags, horizon=horizon)
    mde = minimum_detectable_effect(h["se"])
    if h["tstat"] is None:
        return degenerate(a, b, "rank_ic", h["mean"], "newey_west", mde=mde)
    p = 2 * st.norm.sf(abs(h["tstat"]))
    lo, hi = _interval(h["mean"], h["se"], st.norm.ppf(0.5 + level / 2))
    return comparison(a, b, "rank_ic", h["mean"], lo, hi, p, "newey_west", mde=mde)


def verdict(c: dict, *, higher_is_better: bool, alpha: float = ALPHA) -> str:
    """"better" / "worse" when the interval lies wholly on one side of 0 and the p-value (``p_adjusted`` when
    the comparison carries one: the family's Holm adjustment) is at most ``alpha``; else "tie" (also without an
    interval or a p-value): never a verdict from the point estimate alone. ``higher_is_better`` says which sign
    of ``diff`` favours ``a`` (False for loss differentials and RMSE ratios, True for F1, accuracy and rank IC).
    A one-sided comparison (``sided`` "one-sided") has None on its open side, read as unbounded: only its
    bounded side can exclude 0."""
    if not significant(c.get("p_adjusted", c.get("p_value")), alpha):
        return "tie"
    lo, hi = c.get("ci_low"), c.get("ci_high")
    if c.get("sided") == "one-sided" and (lo is None) != (hi is None):
        lo, hi = (-math.inf if lo is None else lo), (math.inf if hi is None else hi)
    elif lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "tie"
    if math.isnan(lo) or math.isnan(hi) or lo <= 0 <= hi:
        return "tie"
    a_higher = lo > 0
    return "better" if a_higher == higher_is_better else "worse"


def seed_summary(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation (ddof=1; None for a single seed) and count of per-seed results; None
    values (undefined metrics) are left out."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    return {"mean": float(x.mean()) if n else None, "sd": float(x.std(ddof=1)) if n > 1 else None, "n": n}


def seed_difference(values_a: Sequence[float], values_b: Sequence[float], *, a: str = "a", b: str = "b",
                    metric: str = "metric", level: float = 0.95) -> dict | None:
    """Paired t-test over seeds: ``values_a[i]`` and ``values_b[i]`` are one metric of two models trained with the
    same seed (scipy's ``ttest_rel``). ``diff`` is the mean per-seed difference with its t interval; the
    variation it measures is the training seed's, not the test sample's (the per-seed paired tests measure
    that). Two-sided; ``mde`` with Student-t quantiles on ``n_seeds - 1`` degrees of freedom. None with fewer
    than two complete pairs."""
    from scipy import stats as st

    pairs = [(x, y) for x, y in zip(values_a, values_b) if x is not None and y is not None]
    if len(pairs) < 2:
        return None
    x, y = (np.asarray(v, dtype=float) for v in zip(*pairs))
    d = x - y
    if np.allclose(d, d[0]):  # every seed the same difference: no spread to test with, so no interval
        return degenerate(a, b, metric, float(d.mean()), "paired_t_seeds")
    r = st.ttest_rel(x, y)
    ci = r.confidence_interval(level)
    se = float(d.std(ddof=1) / math.sqrt(len(d)))
    return comparison(a, b, metric, d.mean(), ci.low, ci.high, r.pvalue, "paired_t_seeds",
                       mde=minimum_detectable_effect(se, df=len(d) - 1))


def two_way_bootstrap(score, n_seeds: int, n_items: int, *, a: str = "a", b: str = "b", metric: str = "metric",
                      block: float = 1.0, groups=None, reps: int = 999, seed: int = 0, level: float = 0.95,
                      higher_is_better: bool = True) -> dict | None:
    """The across-seed difference of ``a`` and ``b`` with both sources of its noise: a two-way bootstrap that
    resamples the training seeds (with replacement, ``a`` and ``b`` of one seed together) and the test items at
    once (Davison & Hinkley 1997 §3.8's two-stage resampling, here crossed): the items iid, in blocks of a
    stationary bootstrap (``block`` > 1, arch's ``StationaryBootstrap``: time series), or as whole ``groups``
    (near-duplicate texts). ``score(seed_idx, item_idx) -> float`` is the statistic (e.g. the mean over those seeds
    of a's metric minus b's on those items). A paired t over seeds conditions on the one test set and so
    understates the noise a reader cares about. Interval and p-value by :func:`bootstrap_interval` (they agree),
    ``mde`` from the bootstrap's standard error. None with fewer than two seeds."""
    if n_seeds < 2:
        return None
    rng = np.random.default_rng(seed)
    if groups is not None:
        keys, inverse = np.unique(np.asarray(groups), return_inverse=True)
        members = [np.flatnonzero(inverse == g) for g in range(len(keys))]

        def items():
            return np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
    elif block > 1:
        from arch.bootstrap import StationaryBootstrap

        draws = StationaryBootstrap(block, np.arange(n_items), seed=rng).bootstrap(reps)

        def items():
            return next(draws)[0][0]
    else:
        def items():
            return rng.integers(0, n_items, n_items)
    observed = float(score(np.arange(n_seeds), np.arange(n_items)))
    boot = np.array([score(rng.integers(0, n_seeds, n_seeds), items()) for _ in range(reps)])
    lo, hi, p = bootstrap_interval(boot, level=level)
    out = comparison(a, b, metric, observed, lo, hi, p, "two_way_bootstrap_seeds_items",
                      mde=minimum_detectable_effect(float(boot.std(ddof=1))))
    out["verdict"] = verdict(out, higher_is_better=higher_is_better)
    out["n_seeds"], out["n_items"] = int(n_seeds), int(n_items)
    return out


def oos_r2_mde(y, pred, bench, *, horizon: int = 1, lags: int | None = None) -> dict:
    """The smallest out-of-sample R^2 (and RMSE ratio) that a test of equal MSE against ``bench`` (usually the
    expanding historical mean) detects with 80 % power at alpha 0.05 on these test days.

    With ``d_t = (y - pred)^2 - (y - bench)^2``, ``OOS R^2 = 1 - SSE(pred) / SSE(bench) = -mean(d) /
    mean((y - bench)^2)``, so the MDE of R^2 is the Diebold-Mariano test's MDE of ``mean(d)`` (its HAC se with
    the Harvey factor, :func:`diebold_mariano`) divided by the benchmark's MSE: ``(q_{1-alpha/2} + q_0.8) * se /
    MSE(bench)`` two-sided, ``(q_{1-alpha} + q_0.8) * se / MSE(bench)`` one-sided (R^2 > 0 only, as Clark-West
    asks). The RMSE ratio is ``sqrt(1 - R^2)``, so its MDE (``rmse_ratio_below_1``, how far under 1 it must
    fall) is ``1 - sqrt(1 - MDE_R2)``.
    The se is the observed loss differential's, so this is the power at the forecasts' own noise."""
    y, fp, fb = _vectors(y, pred, bench, names=("y", "forecast", "benchmark"), min_n=3)
    c = diebold_mariano(y, fp, fb, horizon=horizon, lags=lags)
    mse_b = float(np.mean((y - fb) ** 2))
    # the DM test's se of mean(d) (HAC, Harvey factor): its two-sided mde is (t_0.975 + t_0.8) * se
    se = None if c["mde"] is None else c["mde"] / minimum_detectable_effect(1.0, df=len(y) - 1)
    out = {"n": len(y), "alpha": ALPHA, "power": POWER}
    for sided in ("two-sided", "one-sided"):
        m = minimum_detectable_effect(se, sided=sided, df=len(y) - 1)
        r2 = None if m is None or mse_b == 0 else m / mse_b
        out[sided] = {"oos_r2": _num(r2),
                      "rmse_ratio_below_1": None if r2 is None or r2 >= 1 else _num(1 - math.sqrt(1 - r2))}
    return out


def mde_block(comparisons: list[dict], metric: str) -> dict:
    """``{"a vs b": {"mde", "sided", "diff", "test", "verdict"}}`` of every comparison on ``metric`` (the
    across-seeds ones keyed "a vs b (seeds)"): the per-case ``power`` summary of what each tie could hide."""
    out = {}
    for c in comparisons:
        if c.get("metric") == metric:
            key = f"{c['a']} vs {c['b']}" + {"paired_t_seeds": " (seeds)",
                                               "two_way_bootstrap_seeds_items": " (seeds x test items)"}.get(c["test"], "")
            out[key] = {k: c.get(k) for k in ("mde", "sided", "diff", "test", "verdict")}
    return out
