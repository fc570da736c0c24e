"""Forecast distributions on the built-in S&P 500 over several seeds (issue #25's done-when): the stocks case's
real stages with ``model.distribution`` = quantile and student_t, each trained with seeds 0..N-1 on the same
windows (params.yaml's stocks settings; no transfer target, so no fine-tuning), then evaluated: the 90 %
interval's coverage after split-conformal and adaptive conformal calibration, CRPS beside GARCH-t and the other
risk-desk baselines with the Diebold-Mariano interval, and the Kupiec / Christoffersen p-values at 1 % and 5 %.

Prints markdown tables (per seed, and mean with the spread over seeds) and writes docs/distributions.json
(one row per head and seed) and docs/fan_chart.png (seed 0's quantile head).

    OMP_NUM_THREADS=1 python benchmarks/distributions.py [--seeds 0 1 2 3 4] [--heads quantile student_t]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from r2n2.registry import parse_params, run_stage  # noqa: E402


def _cfg(head: str, seed: int):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    s = raw["stocks"]
    s["window"]["finetune_entity"] = None
    s["model"]["distribution"] = head
    s["train"]["seed"] = seed
    s["evaluate"]["seeds"] = 1
    return parse_params(raw).cases["stocks"]


def _row(m: dict, head: str, seed: int, seconds: float) -> dict:
    d = m["model"]
    comps = {(c["b"], c["metric"]): c for c in m["comparisons"] if c["a"] == "model"}
    base = m["distribution_baselines"]

    def var(block, p):
        v = block["var_backtests"][p]
        return {"rate": v["rate"], "kupiec_p": v["p_value"], "ind_p": v["p_value_ind"], "cc_p": v["p_value_cc"]}

    crps_garch = comps[("garch_t", "crps")]
    return {"head": head, "seed": seed, "seconds": round(seconds, 1), "n": d["n"],
            "rmse_ratio_random_walk": d.get("rel_rmse_random_walk"),
            "coverage_90": {"before": d["uncalibrated"]["coverage"]["0.9"], "split_conformal": d["coverage"]["0.9"],
                            "adaptive_conformal": d["aci"]["coverage"]["0.9"]},
            "crps": {"model": d["crps"], "model_aci": d["aci"]["crps"],
                     **{name: b["crps"] for name, b in base.items()}},
            "crps_vs_garch_t": {k: crps_garch[k] for k in ("diff", "ci_low", "ci_high", "p_value", "mde", "verdict")},
            "crps_verdicts": {name: comps[(name, "crps")]["verdict"] for name in base},
            "var": {p: {"model": var(d, p), "garch_t": var(base["garch_t"], p)} for p in ("0.01", "0.05")}}


def run(work: Path, heads: list[str], seeds: list[int]) -> list[dict]:
    rows = []
    windows = work / "windows"
    for stage in ("ingest", "validate", "window"):  # the windows do not depend on the head or the seed
        run_stage(stage, "stocks", _cfg(heads[0], seeds[0]), windows, log=lambda _: None)
    for head in heads:
        for seed in seeds:
            folder = work / f"{head}-s{seed}"
            shutil.copytree(windows, folder)
            t0 = time.time()
            for stage in ("train", "baselines", "finetune", "evaluate"):
                run_stage(stage, "stocks", _cfg(head, seed), folder, log=lambda _: None)
            m = json.loads((folder / "data/reports/stocks/metrics.json").read_text())
            rows.append(_row(m, head, seed, time.time() - t0))
            print(json.dumps(rows[-1]), flush=True)
            if head == "quantile" and seed == seeds[0]:
                shutil.copy(folder / "data/reports/stocks/plots/fan.png", ROOT / "docs" / "fan_chart.png")
    return rows


def _ms(values) -> str:
    v = [x for x in values if x is not None]
    if len(v) < 2:
        return f"{v[0]:.4g}" if v else "n/a"
    return f"{statistics.mean(v):.4g} ± {statistics.stdev(v):.2g}"


def table(rows: list[dict]) -> str:
    out = ["| head | seeds | cov 90 % before | split conformal | adaptive conformal | CRPS model | CRPS GARCH-t | "
           "model − GARCH-t: verdicts (seeds) | VaR 1 % Kupiec p | VaR 1 % Chr. cc p | VaR 5 % Kupiec p | "
           "VaR 5 % Chr. cc p |", "|---" * 12 + "|"]
    for head in dict.fromkeys(r["head"] for r in rows):
        rs = [r for r in rows if r["head"] == head]
        verdicts = [r["crps_vs_garch_t"]["verdict"] for r in rs]
        out.append(f"| {head} | {len(rs)} | {_ms(r['coverage_90']['before'] for r in rs)} | "
                   f"{_ms(r['coverage_90']['split_conformal'] for r in rs)} | "
                   f"{_ms(r['coverage_90']['adaptive_conformal'] for r in rs)} | {_ms(r['crps']['model'] for r in rs)} | "
                   f"{_ms(r['crps']['garch_t'] for r in rs)} | "
                   f"{', '.join(f'{v} {verdicts.count(v)}' for v in dict.fromkeys(verdicts))} | "
                   f"{_ms(r['var']['0.01']['model']['kupiec_p'] for r in rs)} | "
                   f"{_ms(r['var']['0.01']['model']['cc_p'] for r in rs)} | "
                   f"{_ms(r['var']['0.05']['model']['kupiec_p'] for r in rs)} | "
                   f"{_ms(r['var']['0.05']['model']['cc_p'] for r in rs)} |")
    out += ["", "| head | seed | cov 90 % split / adaptive | CRPS model − GARCH-t [95 % CI], p | MDE | verdict |",
            "|---|---|---|---|---|---|"]
    for r in rows:
        c = r["crps_vs_garch_t"]
        out.append(f"| {r['head']} | {r['seed']} | {r['coverage_90']['split_conformal']:.3f} / "
                   f"{r['coverage_90']['adaptive_conformal']:.3f} | {c['diff']:.2e} [{c['ci_low']:.2e}, "
                   f"{c['ci_high']:.2e}], p {c['p_value']:.2g} | {c['mde']:.2e} | {c['verdict']} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--heads", nargs="+", default=["quantile", "student_t"], choices=["quantile", "student_t"])
    ap.add_argument("--out", default=str(ROOT / "docs" / "distributions.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="r2n2-dist-") as tmp:
        rows = run(Path(tmp), args.heads, args.seeds)
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
