"""The comparison engine (r2n2.evaluate.engine) and the verdict convention (r2n2.evaluate.stats): interval and p
from one test never disagree, on a grid of synthetic differentials; Holm within each family as statsmodels
computes it; the across-seed comparison and the ablation check; every committed report obeys the rule."""

import ast
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from r2n2.evaluate import distribution as D
from r2n2.evaluate import engine as E
from r2n2.evaluate import stats as S
from r2n2.evaluate import trading as T

ROOT = Path(__file__).resolve().parents[1]
ALPHA = 0.05


def _excludes_zero(c: dict) -> bool:
    lo, hi = c["ci_low"], c["ci_high"]
    if c.get("sided") == "one-sided":
        lo = -math.inf if lo is None else lo
        hi = math.inf if hi is None else hi
    elif lo is None or hi is None:
        return False
    return lo > 0 or hi < 0


def _agree(c: dict) -> None:
    """The convention: the interval excludes 0 exactly when p <= alpha (and neither without the other)."""
    if c["p_value"] is None:
        assert c["ci_low"] is None and c["ci_high"] is None, c
        return
    assert _excludes_zero(c) == S.significant(c["p_value"]), c


# ---- the verdict convention on a grid ---------------------------------------------------------------------------

GRID = [(shift, n, seed) for shift in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3) for n in (40, 120) for seed in range(4)]


@pytest.mark.parametrize("shift,n,seed", GRID)
def test_interval_and_p_agree_for_every_test_on_a_grid_of_synthetic_differentials(shift, n, seed):
    """Differentials from no effect to a clear one, near the boundary at every size: for each test the interval
    excludes 0 exactly when p <= 0.05 -- never an excluding interval with p > alpha, or the reverse."""
    rng = np.random.default_rng(1000 * seed + n)
    y = rng.standard_normal(n)
    fa = (0.2 + shift) * y + rng.standard_normal(n)
    fb = 0.2 * y + rng.standard_normal(n)
    _agree(S.diebold_mariano(y, fa, fb))
    _agree(S.clark_west(y, fa, np.zeros(n)))
    _agree(S.rmse_ratio_bootstrap(y, fa, fb, reps=199, seed=seed))
    _agree(D.differential_test((y - fa) ** 2 - (y - fb) ** 2, a="a", b="b", metric="mse"))
    _agree(T.sharpe_difference(np.sign(fa) * y * 0.01, np.sign(fb) * y * 0.01))
    k = 3
    yc = rng.integers(0, k, n * 3)
    pa = np.where(rng.random(n * 3) < 0.5 + shift, yc, rng.integers(0, k, n * 3))
    pb = np.where(rng.random(n * 3) < 0.5, yc, rng.integers(0, k, n * 3))
    _agree(S.classifier_bootstrap(yc, pa, pb, reps=199, seed=seed))
    _agree(S.classifier_bootstrap(yc, pa, pb, reps=199, seed=seed, groups=np.arange(n * 3) // 2))
    _agree(S.mcnemar_test(yc, pa, pb))
    dates = pd.bdate_range("2020-01-01", periods=n)
    _agree(S.rank_ic_difference(pd.Series(shift + 0.1 * rng.standard_normal(n), index=dates),
                                pd.Series(0.1 * rng.standard_normal(n), index=dates)))
    seeds = 5
    d = shift * 0.1 + 0.02 * rng.standard_normal((seeds, n))  # (seeds, items) per-item differences
    _agree(S.seed_difference(list(d.mean(1)), [0.0] * seeds))
    _agree(S.two_way_bootstrap(lambda si, ii: float(d[si][:, ii].mean()), seeds, n, reps=199, seed=seed))


def test_bootstrap_interval_is_the_order_statistic_that_its_p_value_counts():
    """Every count of replications on one side of 0, around the boundary r = floor((R + 1) alpha / 2): the r-th
    smallest replication is above 0 exactly when p <= alpha."""
    for R in (39, 199, 999, 2000):
        r = math.floor(round((R + 1) * ALPHA / 2, 9))
        for below in range(0, 2 * r + 3):
            reps = np.concatenate([-np.arange(1, below + 1), np.arange(1, R - below + 1)]).astype(float)
            lo, hi, p = S.bootstrap_interval(np.random.default_rng(below).permutation(reps))
            assert (lo > 0) == S.significant(p), (R, below, lo, p)
            assert (lo > 0) == (below < r)
            assert hi > 0
    lo, hi, p = S.bootstrap_interval(np.linspace(1, 2, 20))  # R = 20 < 2 / alpha - 1: no interval, p never small
    assert lo is None and hi is None and p == pytest.approx(2 / 21) and not S.significant(p)


def test_a_constant_differential_has_neither_p_nor_interval_and_equal_inputs_tie():
    y = np.arange(10.0)
    same = S.diebold_mariano(y, y + 1, y + 1)
    assert (same["p_value"], same["ci_low"], same["ci_high"], S.verdict(same, higher_is_better=False)) == \
        (1.0, 0.0, 0.0, "tie")
    const = D.differential_test(np.full(30, 0.5), a="a", b="b", metric="m")
    assert const["p_value"] is None and const["ci_low"] is None and S.verdict(const, higher_is_better=False) == "tie"


def test_verdict_needs_both_the_interval_and_the_adjusted_p():
    c = {"diff": -1.0, "ci_low": -2.0, "ci_high": -0.5, "p_value": 0.01}
    assert S.verdict(c, higher_is_better=False) == "better"
    assert S.verdict({**c, "p_adjusted": 0.06}, higher_is_better=False) == "tie"
    assert S.verdict({**c, "p_value": 0.2}, higher_is_better=False) == "tie"  # an inconsistent input stays a tie


# ---- families ----------------------------------------------------------------------------------------------------

def _c(a, b, metric, test, p, verdict="tie"):
    return {"a": a, "b": b, "metric": metric, "test": test, "p_value": p, "diff": -1.0, "ci_low": -2.0,
            "ci_high": -0.1 if verdict != "tie" else 1.0, "verdict": verdict, "sided": "two-sided"}


def test_holm_within_each_family_equals_statsmodels_and_demotes_verdicts():
    from statsmodels.stats.multitest import multipletests

    comps = [_c("model", "random_walk", "mse", "diebold_mariano", 0.03, "better"),
             _c("model", "random_walk", "mse_adjusted", "clark_west", 0.01, "better"),
             _c("model", "no_relational", "mse", "diebold_mariano", 0.02, "better"),
             _c("model", "historical_mean", "mse", "diebold_mariano", 0.5),
             _c("sign_strategy", "buy_and_hold", "sharpe_net", "ledoit_wolf_hac", 0.004, "worse"),
             _c("finetuned", "scratch", "mse", "diebold_mariano", 0.2),
             _c("model", "no_relational", "rel_rmse", "paired_t_seeds", 0.006, "better"),
             _c("model", "no_relational", "rel_rmse", "two_way_bootstrap_seeds_items", 0.042, "better"),
             _c("finetuned", "scratch", "rel_rmse", "two_way_bootstrap_seeds_items", 0.7),
             _c("model", "garch_t", "crps", "diebold_mariano", None)]
    fams = E.adjust_families(comps, ["random_walk", "historical_mean", "no_relational"])
    by = {}
    for c in comps:
        by.setdefault(c["family"], []).append(c)
    assert [c["family"] for c in comps] == ["headline", "secondary", "headline", "headline", "secondary", "transfer",
                                            "seeds_paired_t", "seeds", "seeds", "secondary"]
    for fam, members in by.items():
        tested = [c for c in members if c["p_value"] is not None]
        ref = multipletests([c["p_value"] for c in tested], method="holm")[1]
        assert [c["p_adjusted"] for c in tested] == pytest.approx(list(ref)), fam
        assert fams[fam]["n"] == len(tested)
    assert comps[-1]["p_adjusted"] is None and comps[-1]["verdict"] == "tie"
    # headline: 0.03, 0.02, 0.5 -> Holm 0.06, 0.06, 0.5: both "better" verdicts become ties, raw p kept beside
    assert comps[0]["verdict"] == comps[2]["verdict"] == "tie" and comps[0]["p_value"] == 0.03
    assert comps[1]["verdict"] == "better" and comps[4]["verdict"] == "worse"  # secondary: 0.02, 0.008 <= 0.05
    assert comps[7]["verdict"] == "tie" and comps[7]["p_adjusted"] == pytest.approx(0.084)  # 2 x 0.042
    assert fams["secondary"]["survive"] == ["model vs random_walk · mse_adjusted · clark_west",
                                            "sign_strategy vs buy_and_hold · sharpe_net · ledoit_wolf_hac"]


def test_headline_family_is_the_first_test_the_headline_table_shows():
    from r2n2.evaluate.report import headline

    comps = [_c("model", "random_walk", "mse", "diebold_mariano", 0.01, "better"),
             _c("model", "random_walk", "ratio", "stationary_bootstrap", 0.01, "better")]
    E.adjust_families(comps, ["random_walk"])
    m = {"model": {"rmse": 1.0}, "baselines": {"random_walk": {"rmse": 1.1}}, "comparisons": comps}
    row = headline("stocks", m, ("rmse",), main="random_walk").splitlines()[3]
    assert comps[0]["family"] == "headline" and row.endswith("better (p 0.01 Holm, raw 0.01, diebold_mariano)")


# ---- across seeds, ablations -------------------------------------------------------------------------------------

def test_across_seeds_is_the_paired_t_and_the_two_way_bootstrap_of_the_cases_own_metric():
    rng = np.random.default_rng(3)
    rows = {"model": rng.normal(1.0, 1.0, (5, 200)), "ablation": rng.normal(1.3, 1.0, (5, 200))}

    def mean(x, ii):
        return x[:, ii].mean(1)

    t, two = E.across_seeds(rows, mean, a="model", others=["model", "ablation"], metric="loss",
                            higher_is_better=False, block=10.0)
    ref_t = S.seed_difference(list(rows["model"].mean(1)), list(rows["ablation"].mean(1)), a="model", b="ablation",
                              metric="loss")
    for k in S.COMPARISON_KEYS:
        assert t[k] == (pytest.approx(ref_t[k]) if isinstance(ref_t[k], float) else ref_t[k]), k
    d = rows["model"] - rows["ablation"]
    ref_two = S.two_way_bootstrap(lambda si, ii: float(d[si][:, ii].mean()), 5, 200, a="model", b="ablation",
                                  metric="loss", block=10.0, higher_is_better=False)
    assert two["diff"] == pytest.approx(ref_two["diff"]) and two["ci_low"] == pytest.approx(ref_two["ci_low"])
    assert two["test"] == "two_way_bootstrap_seeds_items" and two["verdict"] == "better"
    assert E.across_seeds({"model": rows["model"][:1], "ablation": rows["ablation"][:1]}, mean, a="model",
                          others=["ablation"], metric="loss", higher_is_better=False) == []  # one seed: nothing


def test_ablation_worse_than_the_benchmark_is_said_beside_model_vs_ablation():
    m = {"baselines": {"random_walk": {"rel": 1.0}, "no_relational": {"rel": 1.008}},
         "seeds": {"no_relational": {"rel": {"mean": 1.009, "sd": 0.003, "n": 5}}}}
    m["ablations"] = E.ablation_check(m, ["no_relational"], ("random_walk", "rel", False))
    assert m["ablations"]["no_relational"] == {"benchmark": "random_walk", "metric": "rel", "ablation": 1.009,
                                               "benchmark_value": 1.0, "seeds": 5, "worse_than_benchmark": True}
    comps = [_c("model", "no_relational", "rel", "two_way_bootstrap_seeds_items", 0.01, "better")]
    table = E.comparison_table(comps, ablations=m["ablations"])
    assert "| model vs no_relational † |" in table
    assert "worse than the naive benchmark `random_walk`" in E.ablation_lines(m)[0]
    assert not E.ablation_check(m, ["no_relational"], ("random_walk", "rel", True))["no_relational"][
        "worse_than_benchmark"]


# ---- the heads -------------------------------------------------------------------------------------------------------

def test_evaluate_heads_fits_conformal_on_validation_and_tests_crps_against_each_forecaster():
    rng = np.random.default_rng(0)
    levels = [0.05, 0.25, 0.5, 0.75, 0.95]
    z = np.array([-1.645, -0.674, 0.0, 0.674, 1.645])
    y_val, y = rng.standard_normal(300), rng.standard_normal(250)
    narrow = lambda n: np.tile(0.5 * z, (n, 1))  # noqa: E731  too narrow: conformal widens it
    out = E.evaluate_heads(y, levels, {"model": (narrow(300), y_val, narrow(250))},
                           {"wide": np.tile(3 * z, (250, 1))}, horizon=1, online=True, tails=(0.05,))
    b = out["block"]
    assert b["conformal"]["fitted_on"] == "validation" and b["conformal"]["n"] == 300
    assert b["coverage"]["0.9"] > b["uncalibrated"]["coverage"]["0.9"] and "aci" in b
    assert [(c["b"], c["metric"]) for c in out["comparisons"]] == [("wide", "crps"), ("wide", "pinball_0.05")]
    crps = out["comparisons"][0]
    assert crps["verdict"] == "better" and crps["diff"] < 0
    grouped = E.evaluate_heads(y, levels, {"model": (narrow(300), y_val, narrow(250))},
                               {"wide": np.tile(3 * z, (250, 1))}, horizon=1, groups=np.arange(250) // 5)
    assert grouped["comparisons"][0]["diff"] == pytest.approx(crps["diff"]) and "aci" not in grouped["block"]


# ---- the cases use the engine, and committed reports obey the rule ------------------------------------------------

CASES = ("forecast", "classify", "crosssection", "volatility")


def test_case_modules_call_the_engine_and_keep_their_evaluate_functions_short():
    for name in (*CASES, "forecast_dist"):
        src = (ROOT / "r2n2" / "cases" / f"{name}.py").read_text()
        tree = ast.parse(src)
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert not imported & {"_comparison", "two_way_bootstrap", "seed_difference", "seed_summary",
                               "conformal_offsets", "crps_comparison"}, name  # through the engine only
        for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("evaluate")):
            assert fn.end_lineno - fn.lineno + 1 <= 80, (name, fn.name)
    for path in (ROOT / "r2n2").rglob("*.py"):  # stats' private helpers stay private: the public comparison()
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").endswith("stats")
                 for a in n.names}
        assert not {x for x in names if x.startswith("_")}, path


def _committed_metrics():
    paths = sorted([*ROOT.glob("data/reports/*/metrics.json"), *ROOT.glob("data/seeds/*/metrics.json")])
    return [pytest.param(p, id=f"{p.parent.parent.name}/{p.parent.name}") for p in paths]


@pytest.mark.parametrize("path", _committed_metrics())
def test_every_committed_verdict_has_an_excluding_interval_and_an_adjusted_p(path):
    m = json.loads(path.read_text())
    assert m["comparisons"] and m["families"]
    for c in m["comparisons"]:
        assert "p_adjusted" in c and c["family"] in E.FAMILIES, c
        if c["verdict"] in ("better", "worse"):
            assert _excludes_zero(c) and S.significant(c["p_adjusted"]), c
        if c["p_value"] is not None:
            _agree(c)
