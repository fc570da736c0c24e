"""The `r2n2` command: every stage from the shell, reading params.yaml with dotted `--set` overrides.

Expected failures (bad params, bad data, failed validation) print one paragraph and exit non-zero with no
traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

for _var, _val in (("PREFECT_SERVER_ANALYTICS_ENABLED", "false"), ("DVC_NO_ANALYTICS", "1"),
                   ("GX_ANALYTICS_ENABLED", "false")):
    os.environ.setdefault(_var, _val)

EXIT_ERROR = 2
EXIT_VALIDATION = 3


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a params key, value parsed as YAML (repeatable): --set stocks.train.epochs=2")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="r2n2", description="Relational RNN pipeline stages.")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, help_ in (("ingest", "read the source into data/raw/<case>.parquet"),
                        ("validate", "Great Expectations gate -> data/validated/<case>.parquet"),
                        ("window", "features, splits, scalers / tokenizer -> data/windows/<case>/"),
                        ("train", "train the main model -> data/models/<case>/model.pt"),
                        ("finetune", "transfer: new head on the pretrained encoder -> data/models/<case>-finetuned/"),
                        ("evaluate", "model vs baselines -> data/reports/<case>/metrics.json, report.md, plots/")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("case", choices=["stocks", "sentiment"])
        _common(p)
    p = sub.add_parser("demo", help="a short real training run on the S&P 500 windows (after the data stages)")
    _common(p)
    return ap


def run_stage(command: str, case: str, params) -> str:
    from r2n2.paths import CasePaths

    cfg = params.case(case)
    paths = CasePaths(case)
    if command == "ingest":
        from r2n2.data.sources import ingest

        df = ingest(case, cfg, paths.raw)
        return f"ingested {len(df)} {case} rows -> {paths.raw}"
    if command == "validate":
        from r2n2.data.validate import validate

        s = validate(case, cfg, paths.raw, paths.validated, paths.reports)
        return f"validated {s['rows']} {case} rows: {s['expectations']} expectations passed -> {paths.validated}"
    if command == "window":
        from r2n2.data.window import window

        meta = window(case, cfg, paths.validated, paths.windows)
        return f"windowed {case} -> {paths.windows} ({', '.join(meta.get('entities', [])) or meta.get('splits')})"
    from r2n2 import stages

    log = lambda msg: print(f"[{case} {command}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    if command == "train":
        r = stages.train_stage(case, cfg, log=log)
        return (f"trained {case} model: best {r.metric_name} {r.best_metric:.5g} at epoch {r.best_epoch + 1} "
                f"({r.seconds:.0f} s) -> {paths.model_dir / 'model.pt'}")
    if command == "finetune":
        r = stages.finetune_stage(case, cfg, log=log)
        return (f"fine-tuned {case}: {r['metric']} finetuned {r['finetuned']:.5g} vs scratch {r['scratch']:.5g} "
                f"-> {paths.finetuned_dir / 'model.pt'}")
    if command == "evaluate":
        stages.evaluate_stage(case, cfg, log=log)
        return (f"evaluated {case} -> {paths.reports / 'metrics.json'}\n"
                + (paths.reports / "report.md").read_text())
    raise SystemExit(f"unknown command {command}")


def demo(params) -> str:
    import json

    import numpy as np
    import pandas as pd
    import torch

    from r2n2 import StockPriceR2N2
    from r2n2.data.window import load_stock_split
    from r2n2.paths import CasePaths

    paths = CasePaths("stocks")
    table = pd.read_parquet(paths.windows / "features.parquet")
    meta = json.loads((paths.windows / "meta.json").read_text())
    entity = meta["pretrain_entity"]
    train, val = (load_stock_split(table, meta, entity, s) for s in ("train", "val"))
    torch.manual_seed(0)
    model = StockPriceR2N2(input_size=len(meta["features"]), hidden_size=32, output_size=1, num_layers=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    for _ in range(2):
        for idx in np.array_split(rng.permutation(len(train)), max(1, len(train) // 64)):
            x, y = train.batch(idx)
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    x, y = val.batch(np.arange(len(val)))
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(model.eval()(x), y).item()
    zero = float(((y - (0 - meta["target_scaler"]["mean"]) / meta["target_scaler"]["scale"]) ** 2).mean())
    return (f"demo: StockPriceR2N2 on {entity}, 2 epochs: validation MSE {mse:.4f} vs random walk {zero:.4f} "
            f"(ratio {mse / zero:.3f}; below 1 would beat the random walk)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from r2n2.config import load_params
    from r2n2.errors import R2N2Error, ValidationFailed

    try:
        params = load_params(Path(args.params), args.overrides)
        if args.command == "demo":
            message = demo(params)
        else:
            message = run_stage(args.command, args.case, params)
    except ValidationFailed as exc:
        print(f"r2n2 {args.command}: {exc}", file=sys.stderr)
        return EXIT_VALIDATION
    except R2N2Error as exc:
        print(f"r2n2 {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
