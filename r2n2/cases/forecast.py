"""Scoring, reporting and prediction of the series kind (``r2n2.cases.series.SeriesCase``): forecasts of one
series at a time.
Evaluation loads checkpoints and scores them; it never trains."""

from __future__ import annotations


import numpy as np
import pandas as pd

from ..data.window import FEATURE_NAMES, StockBatches, StockWindows, scale_features, series_features
from ..errors import DataError
from ..evaluate.baselines import garch_volatility
from ..evaluate.distribution import student_t_quantiles
from ..evaluate.metrics import expanding_mean_forecast, forecast_tests, regression_metrics
from ..evaluate.engine import (ablation_check, ablation_lines, across_seeds, adjust_families, comparison_table,
                               comparison_text, families_lines, p_text, seed_rows, seed_table)
from ..evaluate.stats import clark_west, diebold_mariano, mde_block, oos_r2_mde, rmse_ratio_bootstrap, verdict
from ..evaluate.trading import buy_and_hold, net_returns, sharpe_difference, sign_strategy
from ..evaluate.plots import (plot_cumulative, plot_fan, plot_forecast, plot_learning_curves, plot_pit,
                              write_csv)
from ..evaluate.report import fmt, history, md_table, verdict_text
from ..io import write_json_atomic, write_text_atomic
from .base import predict_batches, write_predict_calibration
from .forecast_dist import distribution_report, evaluate_distribution, model_outputs

__all__ = ["evaluate_forecasts", "predict_prices", "forecasts"]


def forecasts(model, data, role: str, split: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """(actual, forecast, rows) on the evaluation scale: returns (volatility for a volatility target)."""
    out, rows = model_outputs(model, data, role, split)
    ts = data.meta.target_scaler
    pred = out.reshape(-1) * ts["scale"] + ts["mean"]
    actual = rows["target"].to_numpy(float)
    if data.meta.target == "close":  # a log-price forecast, scored as the return it implies
        pred = pred - rows["base_log_close"].to_numpy(float)
        actual = actual - rows["base_log_close"].to_numpy(float)
    return actual, pred, rows


def _train_actual(data, role: str) -> np.ndarray:
    rows = data.rows(role, "train")
    y = rows["target"].to_numpy(float)
    return y - rows["base_log_close"].to_numpy(float) if data.meta.target == "close" else y


def _history(data, role: str, rows: pd.DataFrame) -> np.ndarray:
    """Every target of this role's series on the rows before the first of ``rows`` (training, validation and the
    windows between the splits), in time order, on the evaluation scale: the history of the expanding mean.
    Rows are consecutive days, so :func:`expanding_mean_forecast` counts a target as known only from its own
    date on (row j's target is realised ``horizon`` rows later)."""
    t = data.table[data.table["entity"] == data.key(role)].sort_values("date")
    t = t[t["date"] < rows["date"].min()]
    y = t["target"].to_numpy(float)
    return y - t["base_log_close"].to_numpy(float) if data.meta.target == "close" else y


def _benchmarks(data, role: str, split: str, actual: np.ndarray, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Forecasts known at each test date: the random walk, the expanding historical mean (every target realised
    so far: training, validation, then test targets from their own date on), GARCH(1,1) for a volatility
    target."""
    meta = data.meta
    out = {"historical_mean": expanding_mean_forecast(_history(data, role, rows), actual, horizon=meta.horizon)}
    if meta.target == "volatility":
        h = meta.horizon
        t = data.table[data.table["entity"] == data.key(role)].reset_index(drop=True)
        r = t["ret_close"].to_numpy(float)
        rv = np.sqrt(pd.Series(r ** 2).rolling(h, min_periods=1).mean().to_numpy())
        ends = np.flatnonzero(t["split"].to_numpy() == split)
        out["random_walk"] = rv[ends]  # realised volatility of the last `horizon` days, known at t
        train_end = int(np.flatnonzero(t["split"].to_numpy() == "train")[-1]) + 1
        out["garch_1_1"] = garch_volatility(r, train_end, ends, h)
    else:
        out["random_walk"] = np.zeros_like(actual)  # no change in (log) price
    return out


def _score(data, role, y, pred, bench) -> dict:
    directional = data.meta.target != "volatility"
    return regression_metrics(y, pred, train_y=_train_actual(data, role), directional=directional,
                              random_walk=bench["random_walk"], benchmark=bench["historical_mean"],
                              hist_mean=None) | {"rel_rmse_historical_mean": _rel(y, pred, bench["historical_mean"])}


def _rel(y, pred, b) -> float | None:
    d = float(np.sqrt(np.mean((y - b) ** 2)))
    return None if d == 0 else float(np.sqrt(np.mean((y - pred) ** 2))) / d


def _compare(y, a_pred, b_pred, a: str, b: str, cfg, horizon: int, *, nested: bool = False) -> list[dict]:
    """DM (and Clark–West, one-sided, when ``b`` is nested in ``a``: the zero forecast, the historical mean)
    plus a block bootstrap of the RMSE ratio; every entry carries its verdict ("tie" whenever the interval
    covers 0), its sidedness and its minimum detectable effect."""
    out = [diebold_mariano(y, a_pred, b_pred, a=a, b=b, horizon=horizon)]
    if nested:
        out.append(clark_west(y, a_pred, b_pred, a=a, b=b, horizon=horizon))
    out.append(rmse_ratio_bootstrap(y, a_pred, b_pred, a=a, b=b, reps=cfg.evaluate.bootstrap, seed=cfg.evaluate.seed))
    for c in out:
        c["verdict"] = verdict(c, higher_is_better=False)
    return out


def _trading(pred, y, cost_bps: float, ppy: int) -> tuple[dict, list[dict]]:
    """The sign strategy and buy-and-hold, net of ``cost_bps`` and gross, each with its Sharpe ratio's Lo (2002)
    standard error; and the Ledoit–Wolf (2008) HAC test of their Sharpe ratios, net and gross; annualised with
    ``ppy`` periods a year (the case's calendar)."""
    out = {"sign_strategy": sign_strategy(pred, y, cost_bps=cost_bps, periods_per_year=ppy),
           "buy_and_hold": buy_and_hold(y, cost_bps=cost_bps, periods_per_year=ppy),
           "gross": {"sign_strategy": sign_strategy(pred, y, periods_per_year=ppy),
                     "buy_and_hold": buy_and_hold(y, periods_per_year=ppy)}, "cost_bps": cost_bps}
    comps = []
    for label, c in (("net", cost_bps), ("gross", 0.0)):
        rs = net_returns(np.sign(pred), y, cost_bps=c)[0]
        rb = net_returns(np.ones(len(y)), y, cost_bps=c)[0]
        comp = sharpe_difference(rs, rb, a="sign_strategy", b="buy_and_hold", metric=f"sharpe_{label}",
                                 periods_per_year=ppy)
        comp["verdict"] = verdict(comp, higher_is_better=True)
        comps.append(comp)
    return out, comps


_SEED_KEYS = ("rmse", "rel_rmse_random_walk", "oos_r2", "directional_accuracy")
_SEED_COLUMNS = [("rel_rmse_random_walk", "RMSE / random walk"), ("oos_r2", "OOS R²"),
                 ("directional_accuracy", "directional accuracy")]


def _seed_table(data, families: dict, role: str, split: str, y, bench, a: str) -> tuple[dict, list[dict]]:
    """Per family: mean, sd and n of the headline metrics over seeds; and ``a`` vs every other family by RMSE
    relative to the random walk, paired by seed (the engine's across-seed tests; test days in blocks of 10)."""
    preds = {name: [forecasts(m, data, role, split)[1] for m, _ in family] for name, family in families.items()}
    table = seed_rows({name: [_score(data, role, y, p, bench) for p in ps] for name, ps in preds.items()}, _SEED_KEYS)
    y = np.asarray(y, float)
    rw = (y - bench["random_walk"]) ** 2  # (days,)
    errors = {name: np.stack([(y - p) ** 2 for p in ps]) for name, ps in preds.items() if ps}  # (seeds, days)

    def rel_rmse(se, ii):  # (k, days) squared errors -> (k,) RMSE / the random walk's on the same days
        return np.sqrt(se[:, ii].mean(1)) / np.sqrt(rw[ii].mean())

    return table, across_seeds(errors, rel_rmse, a=a, others=list(errors), metric="rel_rmse_random_walk",
                               higher_is_better=False, block=10.0)


def _transfer(cfg, data, models: dict, metrics: dict, histories: dict, h: int, directional: bool) -> list[dict]:
    """Fine-tuned vs scratch (and vs the random walk) on the target series, first seed, into ``metrics``."""
    ft, ft_meta = models["finetuned"]
    sc, sc_meta = models["scratch"]
    ty, tpred, trows = forecasts(ft, data, "target", "test")
    spred = forecasts(sc, data, "target", "test")[1]
    tbench = _benchmarks(data, "target", "test", ty, trows)
    metrics["finetuned"] = _score(data, "target", ty, tpred, tbench)
    metrics["scratch"] = _score(data, "target", ty, spred, tbench)
    metrics["target_baselines"] = {name: _score(data, "target", ty, p, tbench) for name, p in tbench.items()}
    comps = _compare(ty, tpred, spred, "finetuned", "scratch", cfg, h)
    comps += _compare(ty, tpred, tbench["random_walk"], "finetuned", "random_walk", cfg, h, nested=True)
    ft_tests = forecast_tests(ty, tpred, tbench["random_walk"], horizon=h, directional=directional)
    metrics["tests"].update({f"finetuned_{k}": v for k, v in ft_tests.items()})
    metrics["target_period"] = {"entity": data.key("target"), "start": str(trows["date"].min().date()),
                                "end": str(trows["date"].max().date()), "n": int(len(ty))}
    metrics["power"]["finetuned_oos_r2_vs_historical_mean"] = oos_r2_mde(ty, tpred, tbench["historical_mean"], horizon=h)
    histories["finetuned"], histories["scratch"] = history(ft_meta), history(sc_meta)
    if "transfer_seeds" in models:
        metrics["transfer_seeds"], seed_comps = _seed_table(data, models["transfer_seeds"], "target", "test", ty,
                                                            tbench, "finetuned")
        comps += seed_comps
    return comps


def evaluate_forecasts(cfg, data, models: dict, paths, log) -> dict:
    meta = data.meta
    directional = meta.target != "volatility"
    h = meta.horizon
    model, model_meta = models["model"]
    y, pred, rows = forecasts(model, data, "pretrain", "test")
    bench = _benchmarks(data, "pretrain", "test", y, rows)
    metrics = {"model": _score(data, "pretrain", y, pred, bench),
               "baselines": {name: _score(data, "pretrain", y, p, bench) for name, p in bench.items()},
               "test_period": {"entity": data.key("pretrain"), "start": str(rows["date"].min().date()),
                               "end": str(rows["date"].max().date()), "n": int(len(y))}}
    histories = {"model": history(model_meta)}
    preds = {"model": pred, **bench}
    for name, (m, m_meta) in models.get("baselines", {}).items():
        preds[name] = forecasts(m, data, "pretrain", "test")[1]
        metrics["baselines"][name] = _score(data, "pretrain", y, preds[name], bench)
        histories[name] = history(m_meta)
    comparisons = _compare(y, pred, bench["random_walk"], "model", "random_walk", cfg, h, nested=True)
    # the prevailing mean is the canonical nested benchmark of an OOS R^2 (Campbell & Thompson 2008; Clark-West)
    comparisons += _compare(y, pred, bench["historical_mean"], "model", "historical_mean", cfg, h, nested=True)
    for name in models.get("baselines", {}):
        comparisons += _compare(y, pred, preds[name], "model", name, cfg, h)
    metrics["tests"] = forecast_tests(y, pred, bench["random_walk"], horizon=h, directional=directional)
    metrics["power"] = {"oos_r2_vs_historical_mean": oos_r2_mde(y, pred, bench["historical_mean"], horizon=h)}
    if directional and meta.target == "return" and h == 1:
        metrics["trading"], sharpe_comps = _trading(pred, y, cfg.evaluate.cost_bps,
                                                      cfg.evaluate.periods_per_year)
        comparisons += sharpe_comps
    dist_frames = {}
    if model.config.distribution != "none":  # quantiles, conformal on validation, scores and VaR backtests
        block, metrics["distribution_baselines"], dist_comps, dist_frames = evaluate_distribution(data, model, y, rows,
                                                                                                  horizon=h)
        metrics["model"].update(block)
        comparisons += dist_comps
    if "finetuned" in models and "scratch" in models:
        comparisons += _transfer(cfg, data, models, metrics, histories, h, directional)
    metrics["seeds"], seed_comps = _seed_table(data, models.get("seeds", {}), "pretrain", "test", y, bench, "model")
    comparisons += seed_comps
    metrics["comparisons"] = comparisons
    metrics["families"] = adjust_families(comparisons, metrics["baselines"])
    metrics["ablations"] = ablation_check(metrics, models.get("baselines", {}), data.case.benchmark)
    metrics["power"].update({"alpha": 0.05, "power": 0.8,
                             **{k: mde_block(comparisons, k) for k in ("rmse_ratio_minus_1", "sharpe_net", "sharpe_gross")}})
    write_json_atomic(metrics, paths.reports / "metrics.json")
    write_predict_calibration(paths, None)  # point forecasts: predict applies nothing
    if cfg.evaluate.plots:
        _plots(data, y, pred, rows, histories, dist_frames, paths.reports / "plots")
    write_text_atomic(_report(metrics, data), paths.reports / "report.md")
    return metrics


def _plots(data, y, pred, rows, histories: dict, dist_frames: dict, plots) -> None:
    meta, ent = data.meta, data.key("pretrain")
    ylabel = {"return": "log return", "close": "log return implied", "volatility": "volatility"}[meta.target]
    dates = rows["date"].dt.strftime("%Y-%m-%d")
    write_csv(pd.DataFrame({"date": dates, "actual": y, "forecast": pred}), plots / "forecast.csv")
    plot_forecast(rows["date"], y, pred, plots / "forecast.png", title=f"{ent}: test-period forecast vs actual",
                  ylabel=ylabel)
    if meta.target != "volatility":
        write_csv(pd.DataFrame({"date": dates, "buy_and_hold": np.cumsum(y),
                                "sign_strategy": np.cumsum(np.sign(pred) * y)}), plots / "cumulative.csv")
        plot_cumulative(rows["date"], y, pred, plots / "cumulative.png",
                        title=f"{ent}: trading the forecast's sign vs buy-and-hold (test period, before costs)")
    write_json_atomic([{"model": k, **r} for k, h_ in histories.items() for r in h_], plots / "learning_curves.json")
    plot_learning_curves(histories, plots / "learning_curves.png",
                         title=f"{data.case.name}: learning curves (scaled MSE)")
    if "fan" in dist_frames:
        fan = dist_frames["fan"].assign(date=lambda f: pd.to_datetime(f["date"]).dt.strftime("%Y-%m-%d"))
        write_csv(fan, plots / "fan.csv")
        plot_fan(dist_frames["fan"], plots / "fan.png", ylabel=ylabel,
                 title=f"{ent}: test-period forecast distribution (split conformal) and realised returns")
    if "pit" in dist_frames:
        write_csv(dist_frames["pit"], plots / "pit.csv")
        plot_pit(dist_frames["pit"], plots / "pit.png", title=f"{ent}: PIT histogram on the quantile grid (test)")


def _power_line(pw: dict | None, what: str) -> str:
    if not pw or pw["two-sided"]["oos_r2"] is None:
        return ""
    two, one = pw["two-sided"], pw["one-sided"]
    ratio = 1 - (two["rmse_ratio_below_1"] or 0)
    return (f"Power ({what}): on these {pw['n']} days a test of equal MSE against the expanding historical mean "
            f"detects, with 80 % power at α = 0.05, an OOS R² of {fmt(two['oos_r2'], 3)} (two-sided; "
            f"{fmt(one['oos_r2'], 3)} one-sided), an RMSE ratio of {fmt(ratio, 4)} or lower: smaller gains could "
            "not have been seen.")


def _report(m: dict, data) -> str:
    meta = data.meta
    cols = ["rmse", "rel_rmse_random_walk", "rel_rmse_historical_mean", "oos_r2", "mase", "directional_accuracy",
            "up_rate"]
    by = {(c["b"], c["test"]): c for c in m["comparisons"] if c["a"] == "model"}
    dm = by.get(("random_walk", "diebold_mariano"))
    cw = by.get(("random_walk", "clark_west"))
    cwh = by.get(("historical_mean", "clark_west"))
    if dm and dm["verdict"] == "better":
        verdict_line = (f"The model's squared errors are significantly lower than the random walk's (DM two-sided, "
                        f"{p_text(dm)}).")
    else:
        verdict_line = (f"Against the random walk the model is a **{verdict_text(dm, 3)}** (Diebold–Mariano, "
                        f"two-sided, {p_text(dm)}): treat its forecasts as no better than 'no change' unless a row "
                        "below says better.")
    verdict_line += (f" Clark–West (one-sided; the model nests the benchmark): vs the random walk {p_text(cw)}, "
                     f"**{cw['verdict'] if cw else 'n/a'}**; vs the expanding historical mean {p_text(cwh)}, "
                     f"**{cwh['verdict'] if cwh else 'n/a'}**.")
    t = m.get("tests", {})
    if t.get("pesaran_timmermann_pvalue") is not None:
        verdict_line += (f" Pesaran–Timmermann (one-sided: the forecast's sign agrees with the return's more often "
                         f"than under independence): statistic {fmt(t['pesaran_timmermann_stat'], 3)}, p = "
                         f"{fmt(t['pesaran_timmermann_pvalue'], 3)}.")
    tp = m["test_period"]
    lines = [f"# Stocks report ({meta.target}, horizon {meta.horizon}, lookback {meta.lookback})", "",
             f"Test period of **{tp['entity']}**: {tp['start']} to {tp['end']} ({tp['n']} windows, after the cut "
             f"date {meta.cuts['test_start']}); every row is scored on the same windows. MASE is the test MAE over "
             "the training period's mean absolute return (compare it with the random walk's row, not with 1); "
             "OOS R² is against the expanding historical mean (of the training and validation targets, then each "
             "test target from its date on).", "",
             md_table({"model": m["model"], **m["baselines"]}, cols), "", verdict_line, "",
             _power_line(m.get("power", {}).get("oos_r2_vs_historical_mean"), "model"), "",
             "Paired comparisons (diff = a minus b; for DM and Clark–West the mean squared-error difference, for the "
             "bootstrap the RMSE ratio minus 1; negative favours a):", "",
             comparison_table(m["comparisons"], ablations=m.get("ablations")), "", *ablation_lines(m),
             *families_lines(m)]
    lines += seed_table("Across seeds (mean ± sd):", m.get("seeds", {}), _SEED_COLUMNS, data.case.name)
    if "trading" in m:
        t = m["trading"]
        rows = {f"{k} (net)": t[k] for k in ("sign_strategy", "buy_and_hold")}
        rows.update({f"{k} (gross)": t["gross"][k] for k in ("sign_strategy", "buy_and_hold")})
        sh = {c["metric"]: c for c in m["comparisons"] if c["a"] == "sign_strategy"}
        lines += [(f"Trading the forecast's sign vs buy-and-hold, net of {t['cost_bps']:g} bp per unit turnover and "
                   "gross (Sharpe ratio's standard error: Lo 2002, Newey–West):"), "",
                  md_table(rows, ["annual_return", "annual_volatility", "sharpe", "sharpe_se", "max_drawdown",
                                  "turnover"]), "",
                  "Sharpe ratio of the sign strategy minus buy-and-hold (Ledoit–Wolf 2008 HAC test, two-sided): "
                  + "; ".join(f"{k.split('_')[1]} {comparison_text(c)}" for k, c in sh.items()) + ".", ""]
    if "finetuned" in m:
        tt = m["target_period"]
        ft = [c for c in m["comparisons"] if c["a"] == "finetuned"]
        v = next((c for c in ft if c["b"] == "scratch" and c["test"] == "diebold_mariano"), None)
        lines += [f"Transfer to **{tt['entity']}** ({tt['start']} to {tt['end']}): fine-tuned from {tp['entity']} vs "
                  "the same architecture trained from scratch on the same target windows (own early-stopped budget):",
                  "", md_table({"finetuned": m["finetuned"], "scratch": m["scratch"], **m["target_baselines"]}, cols),
                  "", (f"Verdict: fine-tuned vs scratch is a **{verdict_text(v) if v else 'tie'}** (first seed, "
                       f"Diebold–Mariano, two-sided, {p_text(v)}; MDE in squared-error units)."), "",
                  _power_line(m.get("power", {}).get("finetuned_oos_r2_vs_historical_mean"), "fine-tuned"), ""]
        lines += seed_table("Transfer across seeds (mean ± sd, target test set):", m.get("transfer_seeds", {}),
                            _SEED_COLUMNS, data.case.name)
        sv = next((c for c in ft if c["b"] == "scratch" and c["test"] == "two_way_bootstrap_seeds_items"), None)
        if sv:
            lines += [f"Across seeds (two-way bootstrap over seeds and target test days, RMSE / random walk) "
                      f"fine-tuned vs scratch: {comparison_text(sv)}.", ""]
    if "distribution" in m["model"]:
        lines += distribution_report(m)
    lines += ["Plots: `plots/forecast.png`, `plots/cumulative.png`, `plots/learning_curves.png`.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- predict
def _target_dates(calendar: pd.DatetimeIndex, origin: pd.DatetimeIndex, horizon: int) -> pd.DatetimeIndex:
    """The trading day ``horizon`` rows after each origin in the input's own calendar; past its last row, the
    business day (Monday to Friday, holidays unknown) ``horizon`` steps after the last known trading day."""
    pos = calendar.searchsorted(origin) + horizon
    inside = pos < len(calendar)
    out = np.empty(len(origin), dtype="datetime64[ns]")
    out[inside] = calendar.to_numpy()[pos[inside]]
    beyond = pos[~inside] - (len(calendar) - 1)
    out[~inside] = [(calendar[-1] + pd.offsets.BDay(int(k))).to_datetime64() for k in beyond]
    return pd.DatetimeIndex(out)


def predict_prices(model, meta, prices: pd.DataFrame, *, batch_size: int = 4096) -> pd.DataFrame:
    """Canonical long prices -> one forecast per window (every day with a full lookback of ``lookback`` rows
    behind it, so N input rows of an entity give N - lookback forecasts: the first row only starts the returns),
    with the same features and scaling as training. Each row: ``origin_date`` (the last input day, the forecast's
    origin), ``target_date`` (the day it forecasts) and ``horizon_days``; a model with a distribution head adds
    ``q<level>`` columns (``q0.05``: the forecast 5 % quantile, as the head gives it: the split-conformal offsets
    of the evaluation, fitted on its validation period, are in ``metrics.json["model"]["conformal"]``)."""
    import torch

    L, feats = meta.lookback, meta.features
    source = {name: col for col, name in FEATURE_NAMES.items()}  # feature -> the price column it is derived from
    missing = [source[f] for f in feats if source.get(f, f) not in prices]
    if missing:
        cols = ", ".join(c.capitalize() for c in missing)
        raise DataError(f"the file lacks the price column{'s' * (len(missing) > 1)} {cols}: add "
                        f"{'them' if len(missing) > 1 else 'it'} (names match in any case; other names: map them with "
                        f"{meta.case}.data.columns). The model was trained on {', '.join(feats)}, derived from the "
                        f"columns {', '.join(source.get(f, f).capitalize() for f in feats)}.")
    ts = meta.target_scaler
    frames = []
    for entity, part in prices.groupby("entity", sort=False):
        part = part.sort_values("date").reset_index(drop=True)
        f = series_features(part, horizon=meta.horizon, target=meta.target).iloc[1:].reset_index(drop=True)
        if len(f) < L:
            raise DataError(f"entity {str(entity)[:80]!r} has {len(part)} rows; a forecast needs at least {L + 1}.")
        windows = StockWindows(scale_features(f, meta), np.zeros(len(f)), np.arange(L - 1, len(f)), L)
        pred = predict_batches(model, StockBatches(windows, batch_size)).reshape(-1) * ts["scale"] + ts["mean"]
        base = f["base_log_close"].to_numpy(float)[windows.ends] if meta.target == "close" else 0.0
        pred = pred - base
        origin = pd.DatetimeIndex(f["date"].to_numpy()[windows.ends])
        out = pd.DataFrame({"entity": str(entity), "origin_date": origin,
                            "target_date": _target_dates(pd.DatetimeIndex(part["date"]), origin, meta.horizon),
                            "horizon_days": meta.horizon, f"forecast_{meta.target}_{meta.horizon}d": pred})
        cfg = model.config
        if cfg.distribution != "none":  # the head's quantiles, q<level> (before the evaluation's conformal offsets)
            raw = predict_batches(model, StockBatches(windows, batch_size), distribution=True).reshape(len(pred), -1)
            q = student_t_quantiles(raw, cfg.quantiles) if cfg.distribution == "student_t" else raw
            q = q * ts["scale"] + ts["mean"] - (base[:, None] if meta.target == "close" else 0.0)
            for j, level in enumerate(cfg.quantiles):
                out[f"q{level:g}"] = q[:, j]
        frames.append(out)
    del torch
    return pd.concat(frames, ignore_index=True)
