"""The comparison engine every case calls: one function for every across-seed comparison
(:func:`across_seeds`), one for every distribution head (:func:`evaluate_heads`), one family adjustment of the
verdicts (:func:`adjust_families`), one check of the ablations against the case's naive benchmark
(:func:`ablation_check`), and one renderer of their rows (:func:`comparison_table`, :func:`head_table`,
:func:`seed_table`, :func:`families_lines`). A case keeps only what is its own: metric names, their direction and
the structure of its test items (days in blocks, near-duplicate texts in groups, dates of a panel).

**Families.** Every comparison in a report belongs to one family, and the report adjusts the p-values within
each family with Holm-Bonferroni (statsmodels ``multipletests``): ``headline`` (the model against each baseline
row of the headline table, by that row's first test: what ``r2n2 headline`` and the Prefect artifact show),
``secondary`` (every other test of the main test set: the other tests of those pairs, the secondary metrics, the
forecast distribution, the trading rows), ``transfer`` (the fine-tuned model on the transfer target, first
seed), ``seeds`` (across seeds: the two-way bootstrap over seeds and test items, the verdict's test of each pair)
and ``seeds_paired_t`` (the paired t over seeds beside each: it conditions on the one test set, so it is its own
family, not a second vote in the first). Each comparison then carries ``family`` and ``p_adjusted`` beside its
``p_value``, and its verdict is "better" / "worse" only when its interval excludes 0 and its adjusted p is at
most alpha (:func:`r2n2.evaluate.stats.verdict`; interval and raw p agree by the convention written there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from .distribution import (adaptive_conformal, apply_offsets, conformal_offsets, crps_comparison, crps_quantile,
                           differential_test, pinball_comparison, score_quantiles)
from .report import MDE_NOTE, fmt, interval_text
from .stats import ALPHA, SEED_TESTS, seed_difference, seed_summary, significant, two_way_bootstrap, verdict

__all__ = ["FAMILIES", "TEST_NAMES", "across_seeds", "seed_rows", "evaluate_heads", "adjust_families", "family_of",
           "ablation_check", "comparison_table", "comparison_text", "p_text", "head_table", "seed_table",
           "families_lines", "ablation_lines"]

FAMILIES = {
    "headline": "the model against each baseline row of the headline table, by that row's first test",
    "secondary": "every other test on the main test set: the other tests of those pairs, secondary metrics, the "
                 "forecast distribution, the trading rows",
    "transfer": "the fine-tuned model on the transfer target (first seed)",
    "seeds": "across seeds: the two-way bootstrap over seeds and test items, the verdict's test of each pair",
    "seeds_paired_t": "across seeds: the paired t over seeds beside each (conditions on the one test set)",
}

TEST_NAMES = {"diebold_mariano": "DM", "clark_west": "Clark–West", "stationary_bootstrap": "block bootstrap",
              "circular_bootstrap": "block bootstrap", "ledoit_wolf_hac": "Ledoit–Wolf",
              "group_bootstrap": "group bootstrap", "paired_bootstrap": "bootstrap", "mcnemar_exact": "McNemar exact",
              "newey_west": "Newey–West", "paired_t_seeds": "paired t, seeds",
              "two_way_bootstrap_seeds_items": "2-way bootstrap"}


# ---------------------------------------------------------------------------------------------- across seeds
def across_seeds(rows: dict[str, np.ndarray], value: Callable[[np.ndarray, np.ndarray], np.ndarray], *, a: str,
                 others: Iterable[str], metric: str, higher_is_better: bool, block: float = 1.0,
                 groups=None) -> list[dict]:
    """``a`` against each of ``others`` across seeds, each pair by two tests: the paired t over seeds (scipy's
    ``ttest_rel`` of the per-seed metric) and, the verdict's test, the two-way bootstrap over seeds and test
    items (:func:`r2n2.evaluate.stats.two_way_bootstrap`: items iid, in stationary blocks of ``block`` for days,
    or as whole ``groups`` for near-duplicate texts).

    ``rows[name]``: (seeds, items, ...) what each seed of a family left per test item (squared errors,
    predicted labels, daily rank ICs, daily losses); ``value(rows_k, items) -> (k,)`` the metric of each of the
    k given seeds on those items, so the bootstrap recomputes the case's own metric on every resample. Seeds are
    paired by index (the same training seed); a family with fewer than two seeds gives nothing."""
    out = []
    if a not in rows:
        return out
    for b in others:
        if b == a or b not in rows:
            continue
        n = min(len(rows[a]), len(rows[b]))
        if n < 2:
            continue
        ra, rb = np.asarray(rows[a])[:n], np.asarray(rows[b])[:n]  # (n, items, ...)
        every = np.arange(ra.shape[1])
        t = seed_difference(list(value(ra, every)), list(value(rb, every)), a=a, b=b, metric=metric)
        t["verdict"] = verdict(t, higher_is_better=higher_is_better)

        def score(si, ii, ra=ra, rb=rb):  # mean over the drawn seeds of a's metric minus b's on the drawn items
            with np.errstate(all="ignore"):
                return float(np.mean(value(ra[si], ii) - value(rb[si], ii)))

        two = two_way_bootstrap(score, n, ra.shape[1], a=a, b=b, metric=metric, block=block, groups=groups,
                                higher_is_better=higher_is_better)
        out += [t, two]
    return out


def seed_rows(per_seed: dict[str, list[dict]], keys: Iterable[str]) -> dict:
    """{family: {metric: {"mean", "sd", "n"}}} of per-seed metric dicts: the across-seed table's numbers."""
    keys = tuple(keys)
    return {name: {k: seed_summary([r.get(k) for r in runs]) for k in keys} for name, runs in per_seed.items()}


# ---------------------------------------------------------------------------------------------- distribution heads
def evaluate_heads(y: np.ndarray, levels, heads: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                   baselines: dict[str, np.ndarray], *, horizon: int, groups=None, online: bool = False,
                   tails: Iterable[float] = (), var: bool = False) -> dict:
    """Every distribution head of a case on its test rows ``y`` (targets), quantiles at ``levels``.

    ``heads``: name -> (validation quantiles, validation targets, raw test quantiles), the model first (then
    neural baselines with a head). Each head's central intervals are widened by a split-conformal offset fitted
    on its validation rows only (never test) and scored on test: CRPS, pinball per level, coverage and width
    (with ``var``: the VaR backtests too). ``online`` (one series, rows in time order) with ``horizon`` 1 adds
    adaptive conformal inference (Gibbs & Candès 2021) of the model's intervals, each test row widened from the
    rows before it. ``baselines``: name -> test quantiles, scored as they are. Comparisons: the model minus each
    other forecaster, Diebold–Mariano on CRPS (on each group's mean CRPS when ``groups``, e.g. a panel's dates)
    and on the pinball loss of each level in ``tails`` (Value-at-Risk quantiles).

    Returns {"block": the model's scores with "levels", "uncalibrated", "conformal" (and "aci"), "scores": the
    others' scores, "comparisons", "quantiles": every forecaster's test quantiles (the model's after conformal)}."""
    levels = [float(t) for t in levels]
    keep = ("crps", "coverage", "width", "var_backtests") if var else ("crps", "coverage", "width")

    def score(q):
        s = score_quantiles(y, q, levels)
        return s if var else {k: v for k, v in s.items() if k != "var_backtests"}

    names = list(heads)
    main = names[0]
    quantiles, offsets = {}, {}
    for name, (q_val, y_val, q_raw) in heads.items():
        offsets[name] = conformal_offsets(q_val, y_val, levels)
        quantiles[name] = apply_offsets(q_raw, offsets[name], levels)
    quantiles.update(baselines)
    q_val, y_val, q_raw = heads[main]
    raw = score(q_raw)
    block = {**score(quantiles[main]), "levels": levels, "uncalibrated": {k: raw[k] for k in keep if k in raw},
             "conformal": {"method": "split conformal (CQR, symmetric, one offset per central interval)",
                           "fitted_on": "validation", "n": int(len(y_val)), "offsets": offsets[main]}}
    if online and horizon == 1:  # row t sees y only up to t - 1 (an h-day target is known h - 1 days later)
        q_aci, state = adaptive_conformal(q_raw, y, levels, q_val, y_val)
        aci = score(q_aci)
        block["aci"] = {**{k: aci[k] for k in keep if k in aci},
                        "method": "adaptive conformal inference (Gibbs & Candès 2021), started from the validation "
                                  "scores, updated after each test row", "state": state}
    scores = {name: score(q) for name, q in quantiles.items() if name != main}
    wanted = [round(float(t), 9) for t in tails if round(float(t), 9) in [round(x, 9) for x in levels]]
    comps = []
    for name in scores:
        if groups is None:
            pair = [crps_comparison(y, quantiles[main], quantiles[name], levels, a=main, b=name, horizon=horizon)]
        else:  # each group's mean CRPS: one value per date of a panel, in date order
            d = crps_quantile(y, quantiles[main], levels) - crps_quantile(y, quantiles[name], levels)
            keys, inverse = np.unique(np.asarray(groups), return_inverse=True)
            per = np.bincount(inverse, weights=d) / np.bincount(inverse)  # (groups,)
            pair = [differential_test(per, a=main, b=name, metric="crps", horizon=horizon)]
        pair += [pinball_comparison(y, quantiles[main], quantiles[name], levels, tau, a=main, b=name, horizon=horizon)
                 for tau in wanted]
        for c in pair:
            c["verdict"] = verdict(c, higher_is_better=False)
        comps += pair
    return {"block": block, "scores": scores, "comparisons": comps, "quantiles": quantiles}


# ---------------------------------------------------------------------------------------------- families
def family_of(c: dict, headline_pairs: set[tuple[str, str]]) -> str:
    """The family of one comparison (module docstring); ``headline_pairs``: the (a, b, metric, test) keys of the
    headline table's tests."""
    if c.get("test") == "paired_t_seeds":
        return "seeds_paired_t"
    if c.get("test") in SEED_TESTS:
        return "seeds"
    if (c.get("a"), c.get("b"), c.get("metric"), c.get("test")) in headline_pairs:
        return "headline"
    if c.get("a") == "finetuned":
        return "transfer"
    return "secondary"


def adjust_families(comparisons: list[dict], baselines: Iterable[str], *, alpha: float = ALPHA) -> dict:
    """Give every comparison its ``family`` and ``p_adjusted`` (Holm-Bonferroni within the family, statsmodels
    ``multipletests``; None where the test has no p-value) and state its verdict on the adjusted p: a "better" /
    "worse" whose adjusted p exceeds ``alpha`` becomes "tie" (the raw p stays beside it). ``baselines``: the
    headline table's rows; each one's first comparison with the model is the headline family. In place; returns
    {family: {"what", "n", "comparisons": ["a vs b · metric · test", ...], "survive": [...]}} for the report."""
    from statsmodels.stats.multitest import multipletests

    first = {}
    for c in comparisons:
        if c.get("a") == "model" and c.get("b") in set(baselines) and c.get("test") not in SEED_TESTS:
            first.setdefault(c["b"], c)
    heads = {(c["a"], c["b"], c["metric"], c["test"]) for c in first.values()}
    groups: dict[str, list[dict]] = {}
    for c in comparisons:
        c["family"] = family_of(c, heads)
        groups.setdefault(c["family"], []).append(c)
    out = {}
    for fam in FAMILIES:
        members = groups.get(fam, [])
        if not members:
            continue
        tested = [c for c in members if c.get("p_value") is not None]
        if tested:
            adj = multipletests([c["p_value"] for c in tested], alpha=alpha, method="holm")[1]
            for c, p in zip(tested, adj):
                c["p_adjusted"] = float(p)
        for c in members:
            c.setdefault("p_adjusted", None)
            if c.get("verdict") in ("better", "worse") and not significant(c["p_adjusted"], alpha):
                c["verdict"] = "tie"
        out[fam] = {"what": FAMILIES[fam], "n": len(tested), "method": "holm", "alpha": alpha,
                    "comparisons": [_label(c) for c in members],
                    "survive": [_label(c) for c in members if c.get("verdict") in ("better", "worse")]}
    return out


def _label(c: dict) -> str:
    return f"{c['a']} vs {c['b']} · {c['metric']} · {c['test']}"


# ---------------------------------------------------------------------------------------------- ablations
def ablation_check(metrics: dict, ablations: Iterable[str], benchmark: tuple[str, str, bool] | None) -> dict:
    """Each ablation (a neural baseline) beside the case's naive ``benchmark`` = (baseline name, metric, higher
    is better) on that metric: its mean over seeds when the report has several, else its first seed's value.
    {ablation: {"benchmark", "metric", "ablation", "benchmark_value", "seeds", "worse_than_benchmark"}}: a win
    of the model over an ablation that is itself worse than the benchmark is not skill the model adds."""
    if not benchmark:
        return {}
    name, metric, higher = benchmark
    bench = (metrics.get("baselines", {}).get(name) or {}).get(metric)
    out = {}
    for abl in ablations:
        seeds = (metrics.get("seeds", {}).get(abl) or {}).get(metric) or {}
        value, n = (seeds["mean"], seeds["n"]) if seeds.get("n", 0) > 1 else \
            ((metrics.get("baselines", {}).get(abl) or {}).get(metric), 1)
        if value is None or bench is None:
            continue
        out[abl] = {"benchmark": name, "metric": metric, "ablation": value, "benchmark_value": bench, "seeds": n,
                    "worse_than_benchmark": bool(value < bench if higher else value > bench)}
    return out


def ablation_lines(metrics: dict) -> list[str]:
    """The sentence the report puts beside "model vs <ablation>": each ablation's score beside the benchmark's."""
    lines = []
    for abl, a in metrics.get("ablations", {}).items():
        what = f"over {a['seeds']} seeds" if a["seeds"] > 1 else "first seed"
        if a["worse_than_benchmark"]:
            lines.append(f"† Ablation `{abl}` is worse than the naive benchmark `{a['benchmark']}` on {a['metric']} "
                         f"({fmt(a['ablation'])} {what} vs {fmt(a['benchmark_value'])}): the model winning against it "
                         "is the ablation's loss, not skill the model adds beyond the benchmark.")
        else:
            lines.append(f"Ablation `{abl}` is not worse than the naive benchmark `{a['benchmark']}` on {a['metric']} "
                         f"({fmt(a['ablation'])} {what} vs {fmt(a['benchmark_value'])}).")
    return lines + [""] if lines else []


# ---------------------------------------------------------------------------------------------- rendering
def p_text(c: dict | None) -> str:
    """The adjusted p with its family and the raw p beside it: "p 0.14 (Holm, headline; raw 0.046)"."""
    if not c:
        return "p n/a"
    if c.get("p_adjusted") is None or "family" not in c:
        return f"p {fmt(c.get('p_value'), 2)}"
    return f"p {fmt(c['p_adjusted'], 2)} (Holm, {c['family']}; raw {fmt(c.get('p_value'), 2)})"


def comparison_text(c: dict | None, digits: int = 3) -> str:
    """One comparison in prose: "**tie** -0.012 [-0.031, 0.006], p 0.41 (Holm, seeds; raw 0.2), MDE 0.027"."""
    if not c:
        return "n/a"
    return (f"**{c.get('verdict', 'tie')}** {fmt(c['diff'], digits)} {interval_text(c, digits)}, {p_text(c)}, "
            f"MDE {fmt(c.get('mde'), 2)}")


def comparison_table(comps: list[dict], *, names: dict[str, str] | None = None, ablations: dict | None = None,
                     note: bool = True, compact: bool = False) -> str:
    """The comparisons as one Markdown table narrow enough for a report page: a vs b (``†`` where b is an
    ablation worse than the naive benchmark), the verdict (on the adjusted p), metric and test (one-sided ones
    marked), the difference with its 95 % interval, the family's Holm-adjusted p, the raw p, the family and the
    MDE; then how to read them. ``compact`` (a replay's few lines, compared one by one): the columns no row fills
    are left out and an ``a`` shared by every row is named once in the header, so the table fits a Prefect
    artifact page; the note then speaks only of what the table holds."""
    names, worse = names or {}, {k for k, v in (ablations or {}).items() if v.get("worse_than_benchmark")}
    head = ["a vs b", "verdict", "metric · test", "diff [95 % CI]", "p (Holm)", "p raw", "family", "MDE (80 %)"]
    rows = []
    for c in comps:
        mark = " †" if c["a"] == "model" and c["b"] in worse else ""
        rows.append([f"{names.get(c['a'], c['a'])} vs {names.get(c['b'], c['b'])}{mark}", f"**{c.get('verdict', '')}**",
                     f"{c['metric']} · {TEST_NAMES.get(c['test'], c['test'])}"
                     f"{', one-sided' if c.get('sided') == 'one-sided' else ''}",
                     f"{fmt(c['diff'], 3)} {interval_text(c, 3)}", fmt(c.get("p_adjusted"), 3), fmt(c["p_value"], 3),
                     c.get("family", ""), fmt(c.get("mde"), 3)])
    keep = list(range(len(head)))
    if compact and rows:
        keep = [j for j in keep if any(r[j] not in ("n/a", "") for r in rows)]
        if len({names.get(c["a"], c["a"]) for c in comps}) == 1 and not any(r[0].endswith(" †") for r in rows):
            head[0] = f"{names.get(comps[0]['a'], comps[0]['a'])} vs"
            rows = [[names.get(c["b"], c["b"]), *r[1:]] for c, r in zip(comps, rows)]
    lines = ["| " + " | ".join(r[j] for j in keep) + " |" for r in (head, *rows)]
    lines.insert(1, "|---" * len(keep) + "|")
    if not note:
        return "\n".join(lines)
    if compact:
        holm = 4 in keep
        return "\n".join(lines + ["", "A verdict is better / worse only when the 95 % interval excludes 0"
                                   + (" and the p adjusted within its family (Holm) is at most 0.05" if holm else "")
                                   + "; the raw p is the test's own." + (" " + MDE_NOTE if 7 in keep else "")])
    return "\n".join(lines + ["", "DM: Diebold–Mariano (HAC); Ledoit–Wolf: their HAC test of two Sharpe ratios; 2-way "
                              "bootstrap: seeds and test items resampled together. A verdict is better / worse only "
                              "when the interval excludes 0 and the p adjusted within its family (Holm) is at most "
                              "0.05; the raw p is beside it. " + MDE_NOTE])


def families_lines(metrics: dict) -> list[str]:
    """Which comparisons the report's verdicts rest on: each family, its size and the verdicts that survive
    Holm's adjustment within it."""
    fams = metrics.get("families", {})
    if not fams:
        return []
    lines = [f"Families of tests (Holm–Bonferroni within each, α = {fmt(next(iter(fams.values()))['alpha'])}; every "
             "verdict reads the adjusted p, the raw p beside it):", ""]
    for name, f in fams.items():
        kept = "; ".join(f["survive"]) if f["survive"] else "none"
        lines.append(f"- **{name}** ({f['n']} tests: {f['what']}): better / worse after adjustment: {kept}.")
    return lines + [""]


def head_table(rows: dict[str, dict]) -> list[str]:
    """The forecast-distribution table: CRPS, coverage of the 50 / 80 / 90 / 98 % intervals and the 90 % width of
    each forecaster, and the VaR backtests (1 % and 5 %: rate, Kupiec, Christoffersen independence and
    conditional coverage p) when a row has them."""
    rows = {k: v for k, v in rows.items() if v}
    var = any(s.get("var_backtests") for s in rows.values())
    head = "| forecast | CRPS | cov 50 % | cov 80 % | cov 90 % | cov 98 % | width 90 % |"
    if var:
        head += " VaR 1 % rate (n) | Kupiec p | Chr. ind p | Chr. cc p | VaR 5 % rate (n) | Kupiec p | Chr. ind p | Chr. cc p |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for name, s in rows.items():
        cov = s["coverage"]
        cells = [fmt(s["crps"])] + [fmt(cov.get(k), 3) for k in ("0.5", "0.8", "0.9", "0.98")] + \
            [fmt(s["width"].get("0.9"))]
        if var:
            for p in ("0.01", "0.05"):
                v = (s.get("var_backtests") or {}).get(p)
                cells += [f"{fmt(v['rate'], 3)} ({v['exceedances']})", fmt(v["p_value"], 3), fmt(v["p_value_ind"], 3),
                          fmt(v["p_value_cc"], 3)] if v else ["n/a"] * 4
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def seed_table(title: str, rows: dict[str, dict], columns: list[tuple[str, str]], case: str, *,
               names: dict[str, str] | None = None) -> list[str]:
    """Report lines of a mean ± sd table over seeds, one column per (metric key, label), or, with one seed, one
    line saying how to get it: a table of n = 1 and "± n/a" tells a reader nothing."""
    names = names or {}
    if not rows or max(next(iter(s.values()))["n"] for s in rows.values()) < 2:
        return [f"{title.rstrip(':')}: one seed only (`evaluate.seeds: 1`); `r2n2 seeds {case}` (or `--set "
                f"{case}.evaluate.seeds=5`) adds mean ± sd and tests across seeds.", ""]
    head = "| model | " + " | ".join(label for _, label in columns) + " | seeds |"
    lines = [title, "", head, "|---" * (len(columns) + 2) + "|"]
    for name, s in rows.items():
        cells = [f"{fmt(s[k]['mean'])} ± {fmt(s[k]['sd'])}" for k, _ in columns]
        lines.append(f"| {names.get(name, name)} | " + " | ".join(cells) + f" | {s[columns[0][0]]['n']} |")
    return lines + [""]
