"""Planted-structure power curves (issue #22 item 1): what the panel model finds when a lead-lag is planted.

A 10-stock panel (2004-2015, t(5) returns, 1.2 % daily vol; ``r2n2.data.planted.lead_lag_panel``) where five
followers' next-day returns load ``beta`` on the leader's (s00) return today, ``beta`` graded 0 .. 0.4, through
the panel case's real stages (ingest, validate, window, train, baselines, evaluate; cut dates 2012-01-03 /
2014-01-02, params.yaml's panel settings otherwise). Arms, all on the same test windows:

- ``model``: the panel's default model (entity relation with a learned identity per stock);
- ``no_identity``: the same model with ``model.identity: false`` (the entity relation before the fix);
- ``no_cross_entity``: each stock alone (the baselines stage's ablation);
- ``planted_rule``: the rule itself applied to the test windows' features (the leader's ``ret_1d`` for the
  followers, 0 for the rest): what a model that found the structure exactly would score;
- ``ridge_cross_stock``: the panel report's linear competitor (per stock, a ridge on every stock's lagged
  features, penalty chosen on validation; ``r2n2.evaluate.linear``). ``--linear-only`` runs this arm and the rule
  alone (ingest, validate, window; no training) and keeps the other arms' rows from docs/planted.json.

Prints a markdown table (mean rank IC over data seeds, its spread, the share of seeds whose NW t > 2 and whose
"model minus each stock alone" interval lies above 0) and writes docs/planted.json and docs/planted_power.png.

    OMP_NUM_THREADS=1 python benchmarks/planted.py [--betas 0 0.05 0.1 0.2 0.4] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from r2n2.data.planted import (analogue_series, lead_lag_panel, lead_lag_share, market_noise_panel,  # noqa: E402
                               one_to_many_panel, one_to_many_roles, one_to_many_share, shared_ar_pair,
                               shuffle_dates_across_stocks, similar_partner_panel)
from r2n2.evaluate.metrics import daily_rank_ic, rank_ic_summary  # noqa: E402
from r2n2.registry import parse_params, run_stage  # noqa: E402

STAGES = ("ingest", "validate", "window", "train", "baselines", "evaluate")


# The linear path at its own budget (issue 39 item 2), from the preset users pass with --set-file: the entity
# relation plus `entity_mixing`, no learned identity (the path's stocks x stocks weights already know who is who),
# and a budget for it. docs/planted.md says how it was chosen.
_PRESET = yaml.safe_load((ROOT / "examples/panel_linear_path.yaml").read_text())
LINEAR_PATH = {section: {k.split(".")[2]: v for k, v in _PRESET.items() if k.split(".")[1] == section}
               for section in ("model", "train")}


def _cfg(folder: Path, seed: int, train: dict | None = None, **model):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    p = raw["panel"]
    p["data"]["source"] = str(folder / "panel.csv")
    p["window"].update({"val_start": "2012-01-03", "test_start": "2014-01-02"})
    p["evaluate"]["plots"] = False
    p["train"]["seed"] = seed
    p["train"].update(train or {})
    p["model"].update(model)
    return parse_params(raw).cases["panel"]


def run_linear_path(family: str, beta: float, seed: int, work: Path) -> list[dict]:
    """Every stage under LINEAR_PATH, so each stock alone (the baselines stage's ablation) trains at the same
    budget as the model it is compared with: arms ``linear_path`` and ``linear_path_alone``."""
    folder = work / f"lp-{family}-b{beta}-s{seed}"
    folder.mkdir(parents=True)
    make = {"panel_lead_lag": lambda: lead_lag_panel(beta=beta, seed=seed),
            "panel_one_to_many": lambda: one_to_many_panel(beta=beta, seed=seed),
            **{name: (lambda name=name: PLACEBOS[name](seed)) for name in PLACEBOS}}[family]
    make().to_csv(folder / "panel.csv", index=False)
    cfg = _cfg(folder, seed, LINEAR_PATH["train"], **LINEAR_PATH["model"])
    t0 = time.time()
    for stage in STAGES:
        run_stage(stage, "panel", cfg, folder, log=lambda _: None)
    m = _metrics(folder)
    share = {"panel_lead_lag": lead_lag_share(beta), "panel_one_to_many": one_to_many_share(beta)}.get(family, 0.0)
    base = {"family": family, "beta": beta, "share": share, "seed": seed}
    d = m["vs_alone"]
    return [{**base, "arm": "linear_path", "rank_ic": m["model"]["rank_ic"], "rank_ic_tstat": m["model"]["rank_ic_tstat"],
             "vs_alone_diff": d["diff"], "vs_alone_ci": [d["ci_low"], d["ci_high"]], "seconds": round(time.time() - t0, 1),
             "ridge_rank_ic": m["baselines"]["ridge_cross_stock"]["rank_ic"],
             "ridge_rank_ic_tstat": m["baselines"]["ridge_cross_stock"]["rank_ic_tstat"]},
            {**base, "arm": "linear_path_alone", "rank_ic": m["no_cross_entity"]["rank_ic"],
             "rank_ic_tstat": m["no_cross_entity"]["rank_ic_tstat"]}]


def _ridge(lp: list[dict], rows: list[dict]) -> str:
    """The ridge of the same data seeds: recorded with the run, or the panel family's ridge row (the ridge is
    fitted in closed form on the same windows, so the training budget does not change it)."""
    old = {(r["family"], r["beta"], r["seed"]): r for r in rows if r["arm"] == "ridge_cross_stock"}
    pairs = [(r["ridge_rank_ic"], r["ridge_rank_ic_tstat"]) if "ridge_rank_ic" in r else
             (old[k]["rank_ic"], old[k]["rank_ic_tstat"]) if (k := (r["family"], r["beta"], r["seed"])) in old else None
             for r in lp]
    pairs = [p for p in pairs if p is not None]
    if not pairs:
        return ""
    return f"{np.mean([p[0] for p in pairs]):.3f} ({sum(p[1] > 2 for p in pairs)}/{len(pairs)})"


def linear_path_table(rows: list[dict]) -> str:
    """Per cell (a planted cell's selection seeds 0-2 apart from any fresh seeds): the linear path's mean IC,
    NW t > 2 and wins over each stock alone at the same budget, the ridge of the same data seeds; for the
    placebos, the seeds where it claims nothing (t < 2, and no interval against each stock alone above 0)."""
    lines = ["| panel | beta | share of follower variance | seeds | linear path: rank IC | NW t > 2 | beats each "
             "stock alone (same budget) | no claim | each stock alone (same budget) | ridge (NW t > 2) |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def group(r):
        return "all" if r["family"] in PLACEBOS else ("0-2" if r["seed"] < 3 else "fresh")

    cells = sorted({(r["family"], r["beta"], group(r)) for r in rows if r["arm"] == "linear_path"})
    for family, beta, seeds in cells:
        lp = [r for r in rows if (r["family"], r["beta"], r["arm"]) == (family, beta, "linear_path") and group(r) == seeds]
        alone = [r for r in rows if (r["family"], r["beta"], r["arm"]) == (family, beta, "linear_path_alone")
                 and group(r) == seeds]
        ic = np.array([r["rank_ic"] for r in lp])
        t2 = sum(r["rank_ic_tstat"] > 2 for r in lp)
        wins = sum(r["vs_alone_ci"][0] > 0 for r in lp)
        quiet = sum(r["rank_ic_tstat"] < 2 and r["vs_alone_ci"][0] <= 0 for r in lp)  # as placebo_table: no claim
        a = np.array([r["rank_ic"] for r in alone])
        span = f"{min(r['seed'] for r in lp)}-{max(r['seed'] for r in lp)}"
        lines.append(f"| {family} | {beta:g} | {100 * lp[0]['share']:.1f} % | {span} ({len(lp)}) | {ic.mean():.3f} ± "
                     f"{ic.std(ddof=1) if len(ic) > 1 else 0:.3f} | {t2}/{len(lp)} | {wins}/{len(lp)} | "
                     f"{quiet}/{len(lp)} ({100 * quiet / len(lp):.0f} %) | {a.mean():.3f} ± "
                     f"{a.std(ddof=1) if len(a) > 1 else 0:.3f} | {_ridge(lp, rows)} |")
    return "\n".join(lines)


def _metrics(folder: Path) -> dict:
    m = json.loads((folder / "data/reports/panel/metrics.json").read_text())
    alone = next(c for c in m["comparisons"] if c["b"] == "no_cross_entity" and c["metric"] == "rank_ic")
    return {"model": m["model"], "no_cross_entity": m["baselines"]["no_cross_entity"], "baselines": m["baselines"],
            "vs_alone": alone}


def _planted_rule(folder: Path, family: str = "panel_lead_lag", seed: int = 0) -> dict:
    t = pd.read_parquet(folder / "data/windows/panel/features.parquet")
    if family == "panel_similar":  # today's return of the stock whose last 20 days correlate most with one's own
        close = t.pivot(index="date", columns="entity", values="close").sort_index()
        r = np.log(close).diff()
        rows = []
        for i in range(20, len(r)):
            c = np.corrcoef(r.iloc[i - 19:i + 1].to_numpy().T)
            np.fill_diagonal(c, -np.inf)
            rows.append(r.iloc[i].to_numpy()[c.argmax(axis=1)])
        scores = pd.DataFrame(rows, index=r.index[20:], columns=r.columns)
    t = t[t["split"] == "test"]
    feats = t.pivot(index="date", columns="entity", values="ret_1d")
    fwd = t.pivot(index="date", columns="entity", values="fwd_return")
    if family in ("panel_lead_lag", "panel_one_to_many"):
        scores = pd.DataFrame(0.0, index=feats.index, columns=feats.columns)
        roles = ({f"s{i:02d}": "s00" for i in range(1, 6)} if family == "panel_lead_lag" else
                 one_to_many_roles(seed=seed))
        for follower, leader in roles.items():
            scores[follower] = feats[leader]
    s = rank_ic_summary(daily_rank_ic(scores.reindex(fwd.index), fwd))
    return {"rank_ic": s["mean"], "rank_ic_tstat": s["tstat"]}


def run_one(beta: float, seed: int, work: Path, family: str = "panel_lead_lag") -> list[dict]:
    folder = work / f"{family}-b{beta}-s{seed}"
    folder.mkdir(parents=True)
    make = {"panel_lead_lag": lead_lag_panel, "panel_similar": similar_partner_panel,
            "panel_one_to_many": one_to_many_panel}[family]
    make(beta=beta, seed=seed).to_csv(folder / "panel.csv", index=False)
    t0 = time.time()
    for stage in STAGES:
        run_stage(stage, "panel", _cfg(folder, seed), folder, log=lambda _: None)
    main = _metrics(folder)
    seconds = time.time() - t0
    blind = work / f"{family}-b{beta}-s{seed}-blind"
    shutil.copytree(folder, blind)
    for stage in ("train", "evaluate"):  # the same baselines and windows, the model without identity
        run_stage(stage, "panel", _cfg(blind, seed, identity=False, entity_mixing=False), blind, log=lambda _: None)
    off = _metrics(blind)
    mixed = work / f"{family}-b{beta}-s{seed}-mixing"
    shutil.copytree(folder, mixed)
    for stage in ("train", "evaluate"):  # the same baselines and windows, the model with the linear path
        run_stage(stage, "panel", _cfg(mixed, seed, entity_mixing=True), mixed, log=lambda _: None)
    mix = _metrics(mixed)
    rule = _planted_rule(folder, family, seed)
    share = {"panel_lead_lag": lead_lag_share(beta), "panel_one_to_many": one_to_many_share(beta)}.get(family,
                                                                                                    beta ** 2)
    base = {"family": family, "beta": beta, "share": share, "seed": seed}
    rows = [{**base, "arm": arm, "rank_ic": m["rank_ic"], "rank_ic_tstat": m["rank_ic_tstat"],
             "vs_alone_diff": d["diff"], "vs_alone_ci": [d["ci_low"], d["ci_high"]]}
            for arm, m, d in (("model", main["model"], main["vs_alone"]),
                              ("no_identity", off["model"], off["vs_alone"]),
                              ("entity_mixing", mix["model"], mix["vs_alone"]))]
    rows.append({**base, "arm": "no_cross_entity", "rank_ic": main["no_cross_entity"]["rank_ic"],
                 "rank_ic_tstat": main["no_cross_entity"]["rank_ic_tstat"]})
    rows.append({**base, "arm": "planted_rule", **rule})
    ridge = main["baselines"]["ridge_cross_stock"]
    rows.append({**base, "arm": "ridge_cross_stock", "rank_ic": ridge["rank_ic"],
                 "rank_ic_tstat": ridge["rank_ic_tstat"]})
    rows[0]["seconds"] = round(seconds, 1)
    return rows


def run_linear(beta: float, seed: int, work: Path) -> list[dict]:
    """The ridge and the rule on the lead-lag family's windows, without training (the stages up to window)."""
    from r2n2.cases.crosssection import PANEL_FEATURES
    from r2n2.evaluate.linear import cross_stock_ridge

    folder = work / f"linear-b{beta}-s{seed}"
    folder.mkdir(parents=True)
    lead_lag_panel(beta=beta, seed=seed).to_csv(folder / "panel.csv", index=False)
    for stage in ("ingest", "validate", "window"):
        run_stage(stage, "panel", _cfg(folder, seed), folder, log=lambda _: None)
    t = pd.read_parquet(folder / "data/windows/panel/features.parquet")
    scores, choice = cross_stock_ridge(t, PANEL_FEATURES)
    test = t.pivot(index="date", columns="entity", values="split").eq("test")
    fwd = t.pivot(index="date", columns="entity", values="fwd_return").where(test)
    s = rank_ic_summary(daily_rank_ic(scores.where(test).reindex(fwd.index), fwd))
    base = {"family": "panel_lead_lag", "beta": beta, "share": lead_lag_share(beta), "seed": seed}
    return [{**base, "arm": "ridge_cross_stock", "rank_ic": s["mean"], "rank_ic_tstat": s["tstat"],
             "alpha": choice["alpha"]}, {**base, "arm": "planted_rule", **_planted_rule(folder)}]


PLACEBOS = {  # name -> the panel of a data seed; nothing in any of them predicts a next-day return
    "placebo_noise": lambda seed: lead_lag_panel(beta=0.0, seed=seed),  # the power curve's beta = 0 cell
    "placebo_market_noise": lambda seed: market_noise_panel(seed=seed),  # a market factor, no lead
    "placebo_shuffled_dates": lambda seed: shuffle_dates_across_stocks(lead_lag_panel(beta=0.4, seed=seed),
                                                                       seed=seed),  # beta 0.4, stocks rotated
}


def run_placebo(name: str, seed: int, work: Path) -> list[dict]:
    """One placebo panel through every stage: the model's, each stock alone's and the ridge's test rank IC, and
    whether the model claims structure (NW t >= 2, or its interval against each stock alone above 0)."""
    folder = work / f"{name}-s{seed}"
    folder.mkdir(parents=True)
    PLACEBOS[name](seed).to_csv(folder / "panel.csv", index=False)
    for stage in STAGES:
        run_stage(stage, "panel", _cfg(folder, seed), folder, log=lambda _: None)
    m = _metrics(folder)
    alone = m["vs_alone"]
    base = {"family": name, "beta": 0.0, "share": 0.0, "seed": seed}
    rows = [{**base, "arm": "model", "rank_ic": m["model"]["rank_ic"], "rank_ic_tstat": m["model"]["rank_ic_tstat"],
             "vs_alone_diff": alone["diff"], "vs_alone_ci": [alone["ci_low"], alone["ci_high"]]}]
    for arm in ("no_cross_entity", "ridge_cross_stock"):
        rows.append({**base, "arm": arm, "rank_ic": m["baselines"][arm]["rank_ic"],
                     "rank_ic_tstat": m["baselines"][arm]["rank_ic_tstat"]})
    return rows


def placebo_table(rows: list[dict]) -> str:
    """Per placebo and arm: mean rank IC over seeds, its spread, the seeds with NW t < 2 (a claim is a positive
    one: t >= 2, as the issue states it) and, for the model,
    the seeds whose interval against each stock alone covers 0 (a tie) and those with neither claim."""
    df = pd.DataFrame([r for r in rows if r["family"] in PLACEBOS])
    if df.empty:
        return ""
    out = ["| placebo | arm | seeds | rank IC mean | sd over seeds | seeds with IC > 0 | NW t < 2 | "
           "tie with each stock alone | no claim (both) |", "|---|---|---|---|---|---|---|---|---|"]
    for (name, arm), g in df.groupby(["family", "arm"], sort=False):
        quiet = g["rank_ic_tstat"] < 2
        if arm in ("model", "entity_mixing", "linear_path"):
            tie = pd.Series([ci[0] is None or ci[0] <= 0 for ci in g["vs_alone_ci"]], index=g.index)
            extra = f"{tie.sum()}/{len(g)} | {(tie & quiet).sum()}/{len(g)} ({(tie & quiet).mean():.0%})"
        else:
            extra = " | "
        out.append(f"| {name.removeprefix('placebo_')} | {arm} | {len(g)} | {g['rank_ic'].mean():.4f} | "
                   f"{g['rank_ic'].std(ddof=1):.4f} | {(g['rank_ic'] > 0).sum()}/{len(g)} | "
                   f"{quiet.sum()}/{len(g)} | {extra} |")
    return "\n".join(out)


def _series_cfg(folder: Path, seed: int):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    p = raw["stocks"]
    p["data"]["source"] = str(folder / "series.csv")
    p["window"].update({"val_start": "2012-01-03", "test_start": "2014-01-02"})
    p["evaluate"]["plots"] = False
    p["train"]["seed"] = seed
    return parse_params(raw).cases["stocks"]


def _series_rule(folder: Path, beta: float, seed: int) -> float:
    """RMSE / random walk of the planted rule itself on the test windows (the best any model can do)."""
    t = pd.read_parquet(folder / "data/windows/stocks/features.parquet")
    gap, r = t["ret_open"].to_numpy(), t["ret_close"].to_numpy()
    span, pred = 28, np.full(len(t), np.nan)
    for i in range(span, len(t)):
        past = np.arange(i - span, i)
        pred[i] = beta * r[past[np.argmin(np.abs(gap[past] - gap[i]))] + 1]
    test = (t["split"] == "test").to_numpy() & np.isfinite(pred)
    y = t["target"].to_numpy()[test]
    return float(np.sqrt(np.mean((y - pred[test]) ** 2) / np.mean(y ** 2)))


def run_series(beta: float, seed: int, work: Path) -> list[dict]:
    """The slides' relational model (stocks' default) vs the same encoder without the relational module."""
    folder = work / f"series-b{beta}-s{seed}"
    folder.mkdir(parents=True)
    analogue_series(beta=beta, seed=seed).to_csv(folder / "series.csv", index=False)
    for stage in STAGES:
        run_stage(stage, "stocks", _series_cfg(folder, seed), folder, log=lambda _: None)
    m = json.loads((folder / "data/reports/stocks/metrics.json").read_text())
    dm = next(c for c in m["comparisons"] if c["b"] == "no_relational" and c["test"] == "diebold_mariano")
    base = {"family": "series_analogue", "beta": beta, "share": beta ** 2, "seed": seed}
    return [{**base, "arm": "model", "rel_rmse_random_walk": m["model"]["rel_rmse_random_walk"],
             "vs_ablation_diff": dm["diff"], "vs_ablation_ci": [dm["ci_low"], dm["ci_high"]]},
            {**base, "arm": "no_relational",
             "rel_rmse_random_walk": m["baselines"]["no_relational"]["rel_rmse_random_walk"]},
            {**base, "arm": "planted_rule", "rel_rmse_random_walk": _series_rule(folder, beta, seed)}]


def run_transfer(beta: float, fraction: float, seed: int, work: Path) -> list[dict]:
    """Source and target share a planted AR(1) rule; the target trains on ``fraction`` of its windows: the
    pretrained encoder fine-tuned vs the same architecture from scratch on the same target windows."""
    folder = work / f"transfer-b{beta}-f{fraction}-s{seed}"
    folder.mkdir(parents=True)
    shared_ar_pair(beta=beta, seed=seed).to_csv(folder / "pair.csv", index=False)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    p = raw["stocks"]
    p["data"]["source"] = str(folder / "pair.csv")
    p["window"].update({"val_start": "2012-01-03", "test_start": "2014-01-02", "pretrain_entity": "src",
                        "finetune_entity": "tgt"})
    p["evaluate"]["plots"] = False
    p["train"]["seed"] = seed
    p["finetune"]["train_fraction"] = fraction
    cfg = parse_params(raw).cases["stocks"]
    for stage in ("ingest", "validate", "window", "train", "baselines", "finetune", "evaluate"):
        run_stage(stage, "stocks", cfg, folder, log=lambda _: None)
    m = json.loads((folder / "data/reports/stocks/metrics.json").read_text())
    dm = next(c for c in m["comparisons"] if c["a"] == "finetuned" and c["b"] == "scratch"
              and c["test"] == "diebold_mariano")
    base = {"family": "transfer_shared_ar", "beta": beta, "fraction": fraction, "share": beta ** 2, "seed": seed}
    return [{**base, "arm": "finetuned", "rel_rmse_random_walk": m["finetuned"]["rel_rmse_random_walk"],
             "vs_scratch_diff": dm["diff"], "vs_scratch_ci": [dm["ci_low"], dm["ci_high"]]},
            {**base, "arm": "scratch", "rel_rmse_random_walk": m["scratch"]["rel_rmse_random_walk"]},
            {**base, "arm": "rule", "rel_rmse_random_walk": float(np.sqrt(1 - beta ** 2))}]


def transfer_table(rows: list[dict]) -> str:
    df = pd.DataFrame([r for r in rows if r["family"] == "transfer_shared_ar"])
    if df.empty:
        return ""
    out = ["| beta | target train fraction | arm | seeds | RMSE / random walk, mean | sd over seeds | "
           "fine-tuned beats scratch (DM interval < 0) |", "|---|---|---|---|---|---|---|"]
    for (beta, frac, arm), g in df.groupby(["beta", "fraction", "arm"], sort=True):
        wins = "" if arm != "finetuned" else \
            f"{sum(ci[1] is not None and ci[1] < 0 for ci in g['vs_scratch_ci'])}/{len(g)}"
        out.append(f"| {beta:g} | {frac:g} | {arm} | {len(g)} | {g['rel_rmse_random_walk'].mean():.4f} | "
                   f"{g['rel_rmse_random_walk'].std(ddof=1) if len(g) > 1 else float('nan'):.4f} | {wins} |")
    return "\n".join(out)


def series_table(rows: list[dict]) -> str:
    df = pd.DataFrame([r for r in rows if r["family"] == "series_analogue"])
    if df.empty:
        return ""
    out = ["| beta | arm | seeds | RMSE / random walk, mean | sd over seeds | beats the ablation (DM interval < 0) |",
           "|---|---|---|---|---|---|"]
    for (beta, arm), g in df.groupby(["beta", "arm"], sort=True):
        wins = "" if arm != "model" else \
            f"{sum(ci[1] is not None and ci[1] < 0 for ci in g['vs_ablation_ci'])}/{len(g)}"
        out.append(f"| {beta:g} | {arm} | {len(g)} | {g['rel_rmse_random_walk'].mean():.4f} | "
                   f"{g['rel_rmse_random_walk'].std(ddof=1) if len(g) > 1 else float('nan'):.4f} | {wins} |")
    return "\n".join(out)


def table(rows: list[dict], family: str = "panel_lead_lag") -> str:
    df = pd.DataFrame([r for r in rows if r["family"] == family])
    if df.empty:
        return ""
    out = ["| beta | share of follower variance | arm | seeds | rank IC mean | sd over seeds | NW t > 2 | "
           "beats each stock alone (interval > 0) |", "|---|---|---|---|---|---|---|---|"]
    for (beta, arm), g in df.groupby(["beta", "arm"], sort=True):
        wins = "" if "vs_alone_ci" not in g or g["vs_alone_ci"].isna().all() else \
            f"{sum(ci[0] is not None and ci[0] > 0 for ci in g['vs_alone_ci'])}/{len(g)}"
        out.append(f"| {beta:g} | {g['share'].iloc[0]:.1%} | {arm} | {len(g)} | {g['rank_ic'].mean():.3f} | "
                   f"{g['rank_ic'].std(ddof=1) if len(g) > 1 else float('nan'):.3f} | "
                   f"{(g['rank_ic_tstat'] > 2).sum()}/{len(g)} | {wins} |")
    return "\n".join(out)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import t as t_dist

    df = pd.DataFrame([r for r in rows if r["family"] == "panel_lead_lag" and r["seed"] < 3])  # seeds every arm ran
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    styles = {"planted_rule": ("k", "--"), "model": ("tab:blue", "-"), "no_identity": ("tab:orange", "-"),
              "no_cross_entity": ("tab:green", "-"), "ridge_cross_stock": ("tab:red", ":"),
              "entity_mixing": ("tab:purple", "-"), "linear_path": ("tab:brown", "-")}
    for arm, (color, ls) in styles.items():
        g = df[df["arm"] == arm].groupby("beta")["rank_ic"]
        mean, sd, n = g.mean(), g.std(ddof=1).fillna(0), g.count()
        half = t_dist.ppf(0.975, np.maximum(n - 1, 1)) * sd / np.sqrt(n)  # t interval over few seeds
        ax.errorbar(mean.index, mean, yerr=half, color=color, ls=ls, marker="o", capsize=3,
                    label="linear_path (preset, own budget; chosen on these seeds)" if arm == "linear_path" else arm)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set(xlabel="planted loading beta (followers' next-day return on the leader's return today)",
           ylabel="test rank IC (mean over seeds, 95 % interval)",
           title="Planted lead-lag panel: what each model finds")
    ax.legend(loc="upper left", frameon=False)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2, 0.4])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--series-betas", type=float, nargs="*", default=[0.0, 0.2, 0.4])
    ap.add_argument("--transfer", type=str, nargs="*", default=["0:0.05", "0.3:0.05", "0.3:0.2", "0.3:1"],
                    help="transfer family cells as beta:target_train_fraction")
    ap.add_argument("--one-to-many-betas", type=float, nargs="*", default=[0.2, 0.3],
                    help="two leaders, three followers each, a market factor, shuffled names")
    ap.add_argument("--similar-betas", type=float, nargs="*", default=[0.0, 0.2, 0.4],
                    help="the content-based panel family (partner = the most correlated stock)")
    ap.add_argument("--only", choices=("panel", "one_to_many", "similar", "series", "transfer"), help="run one family; the other families' "
                    "rows are kept from an existing planted.json")
    ap.add_argument("--plot-only", action="store_true", help="redraw the plot and tables from docs/planted.json")
    ap.add_argument("--linear-only", action="store_true", help="the lead-lag family's ridge and rule arms alone (no "
                    "training), for --betas and --seeds; every other row is kept from docs/planted.json")
    ap.add_argument("--placebo", type=int, metavar="SEEDS", help="the placebos alone, data seeds 0..SEEDS-1 (the "
                    "issue's 20); every other row is kept from docs/planted.json")
    ap.add_argument("--skip-panel", action="store_true", help="series family only (rows of the panel family are "
                    "kept from an existing planted.json)")
    ap.add_argument("--linear-path", nargs="+", metavar="FAMILY:BETA", help="the LINEAR_PATH arms alone (every "
                    "stage at its budget) for these cells, e.g. panel_lead_lag:0.2 placebo_market_noise:0, at --seeds; "
                    "every other row is kept from planted.json")
    ap.add_argument("--out", default=str(ROOT / "docs"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    rows, t0 = [], time.time()
    out = Path(args.out)
    if args.plot_only:
        rows = json.loads((out / "planted.json").read_text())
        plot(rows, out / "planted_power.png")
        print(table(rows), "", table(rows, "panel_similar"), "", series_table(rows), "", transfer_table(rows),
              "", placebo_table(rows), sep="\n")
        return
    if args.linear_path:
        rows = json.loads((out / "planted.json").read_text())
        with tempfile.TemporaryDirectory() as tmp:
            for cell in dict.fromkeys(args.linear_path):  # a cell given twice runs once
                family, beta = cell.split(":")
                for seed in args.seeds:
                    rows = [r for r in rows if not (r["family"] == family and r["beta"] == float(beta) and
                                                    r["seed"] == seed and r["arm"].startswith("linear_path"))]
                    new = run_linear_path(family, float(beta), seed, Path(tmp))
                    rows += new
                    print(f"{family} {beta} seed {seed}: linear path {new[0]['rank_ic']:.4f} (t "
                          f"{new[0]['rank_ic_tstat']:.2f}, vs alone {new[0]['vs_alone_ci'][0]:+.4f}), alone "
                          f"{new[1]['rank_ic']:.4f}", flush=True)
                    (out / "planted.json").write_text(json.dumps(rows, indent=1) + "\n")
        print(linear_path_table(rows))
        return
    if args.placebo:
        rows = json.loads((out / "planted.json").read_text())
        done = {(r["family"], r["seed"]) for r in rows if r["family"] in PLACEBOS}  # an interrupted sweep resumes
        with tempfile.TemporaryDirectory() as tmp:
            for seed in range(args.placebo):  # seed-major: an interrupted sweep has every placebo at the first seeds
                for name in [n for n in PLACEBOS if (n, seed) not in done]:
                    new = run_placebo(name, seed, Path(tmp))
                    rows += new
                    print(f"{name} seed {seed}: " + ", ".join(f"{r['arm']} {r['rank_ic']:.4f} (t {r['rank_ic_tstat']:.2f})"
                                                              for r in new), flush=True)
                (out / "planted.json").write_text(json.dumps(rows, indent=1) + "\n")
        print(placebo_table(rows))
        print(f"\n{time.time() - t0:.0f} s for the runs of this call")
        return
    if args.linear_only:
        old = json.loads((out / "planted.json").read_text())
        cells = {(b, s) for b in args.betas for s in args.seeds}
        rows = [r for r in old if not (r["family"] == "panel_lead_lag" and (r["beta"], r["seed"]) in cells
                                       and r["arm"] in ("ridge_cross_stock", "planted_rule"))]
        with tempfile.TemporaryDirectory() as tmp:
            for beta, seed in sorted(cells):
                rows += run_linear(beta, seed, Path(tmp))
                print(f"beta {beta:g} seed {seed}: ridge {rows[-2]['rank_ic']:.3f} (alpha {rows[-2]['alpha']:g}), "
                      f"rule {rows[-1]['rank_ic']:.3f}", flush=True)
        (out / "planted.json").write_text(json.dumps(rows, indent=1) + "\n")
        plot(rows, out / "planted_power.png")
        print(table(rows))
        return
    if args.only:
        family = {"panel": "panel_lead_lag", "one_to_many": "panel_one_to_many", "similar": "panel_similar",
                  "series": "series_analogue", "transfer": "transfer_shared_ar"}[args.only]
        rows = [r for r in json.loads((out / "planted.json").read_text()) if r["family"] != family]
        args.skip_panel = args.only != "panel"
        args.series_betas = args.series_betas if args.only == "series" else []
        args.transfer = args.transfer if args.only == "transfer" else []
        args.similar_betas = args.similar_betas if args.only == "similar" else []
        args.one_to_many_betas = args.one_to_many_betas if args.only == "one_to_many" else []
    elif args.skip_panel:
        rows = [r for r in json.loads((out / "planted.json").read_text()) if r["family"] == "panel_lead_lag"]
    if not args.only and (out / "planted.json").exists():  # a full run keeps what it does not rerun: the placebos
        rows += [r for r in json.loads((out / "planted.json").read_text()) if r["family"] in PLACEBOS]
    with tempfile.TemporaryDirectory() as tmp:
        for beta in [] if args.skip_panel else args.betas:
            for seed in args.seeds:
                rows += run_one(beta, seed, Path(tmp))
                print(f"beta {beta:g} seed {seed}: " + ", ".join(
                    f"{r['arm']} {r['rank_ic']:.3f}" for r in rows[-6:]), flush=True)
        for beta in args.one_to_many_betas:
            for seed in args.seeds:
                rows += run_one(beta, seed, Path(tmp), "panel_one_to_many")
                print(f"one-to-many beta {beta:g} seed {seed}: " + ", ".join(
                    f"{r['arm']} {r['rank_ic']:.3f}" for r in rows[-6:]), flush=True)
        for beta in args.similar_betas:
            for seed in args.seeds:
                rows += run_one(beta, seed, Path(tmp), "panel_similar")
                print(f"similar beta {beta:g} seed {seed}: " + ", ".join(
                    f"{r['arm']} {r['rank_ic']:.3f}" for r in rows[-6:]), flush=True)
        for beta in args.series_betas:
            for seed in args.seeds:
                rows += run_series(beta, seed, Path(tmp))
                print(f"series beta {beta:g} seed {seed}: " + ", ".join(
                    f"{r['arm']} {r['rel_rmse_random_walk']:.4f}" for r in rows[-3:]), flush=True)
        for cell in args.transfer:
            beta, fraction = (float(v) for v in cell.split(":"))
            for seed in args.seeds:
                rows += run_transfer(beta, fraction, seed, Path(tmp))
                print(f"transfer beta {beta:g} fraction {fraction:g} seed {seed}: " + ", ".join(
                    f"{r['arm']} {r['rel_rmse_random_walk']:.4f}" for r in rows[-3:]), flush=True)
    (out / "planted.json").write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, out / "planted_power.png")
    print(table(rows))
    print()
    print(table(rows, "panel_one_to_many"))
    print()
    print(table(rows, "panel_similar"))
    print()
    print(series_table(rows))
    print()
    print(transfer_table(rows))
    print(f"\n{time.time() - t0:.0f} s for the runs of this call")


if __name__ == "__main__":
    main()
