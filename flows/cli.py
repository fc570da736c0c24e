"""The `r2n2` command: every stage from the shell, reading params.yaml with dotted `--set` overrides.

Stage commands run the pure stage function directly, or as a Prefect flow run (visible in the UI) when
PREFECT_API_URL is set or `--prefect` is given. `pipeline`, `retrain`, `monitor`, `serve` and `tune` always
use Prefect. Expected failures (bad params, bad data, failed validation) print one paragraph and exit
non-zero with no traceback; anything else is a bug and keeps its traceback.
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
CASES = ["stocks", "sentiment"]
STAGE_HELP = {
    "ingest": "read the source into data/raw/<case>.parquet",
    "validate": "Great Expectations gate -> data/validated/<case>.parquet",
    "window": "features, splits, scalers / tokenizer -> data/windows/<case>/",
    "train": "train the main model -> data/models/<case>/model.pt",
    "finetune": "transfer: new head on the pretrained encoder -> data/models/<case>-finetuned/",
    "evaluate": "model vs baselines -> data/reports/<case>/metrics.json, report.md, plots/",
}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a params key, value parsed as YAML (repeatable): --set stocks.train.epochs=2")
    p.add_argument("--set-file", dest="set_files", action="append", default=[], metavar="YAML",
                   help="overrides from a YAML mapping of dotted keys, e.g. data/tuning/stocks-best.yaml")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="r2n2", description="Relational RNN pipeline: stages, flows, serving.")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, help_ in STAGE_HELP.items():
        p = sub.add_parser(name, help=help_)
        p.add_argument("case", choices=CASES)
        p.add_argument("--prefect", action="store_true", help="run as a Prefect flow even without PREFECT_API_URL")
        _common(p)
    p = sub.add_parser("pipeline", help="all stages as one Prefect flow")
    p.add_argument("case", choices=[*CASES, "all"])
    _common(p)
    p = sub.add_parser("predict", help="batch predictions for a new CSV / Parquet file")
    p.add_argument("case", choices=CASES)
    p.add_argument("--input", required=True, help="CSV or Parquet with the training data's schema")
    p.add_argument("--output", required=True, help="Parquet file to write")
    p.add_argument("--model", help="checkpoint (default: the champion, else data/models/<case>/model.pt)")
    _common(p)
    p = sub.add_parser("monitor", help="score the champion on the newest data; retrain on drift")
    p.add_argument("case", choices=[*CASES, "all"])
    p.add_argument("--no-retrain", action="store_true", help="report drift only")
    _common(p)
    p = sub.add_parser("retrain", help="ingest newest data, dvc repro, promote if not worse, dvc push")
    p.add_argument("--no-push", action="store_true")
    _common(p)
    p = sub.add_parser("serve", help="serve the scheduled retrain and monitor deployments (needs `r2n2 ui`)")
    _common(p)
    p = sub.add_parser("ui", help="start the Prefect server and UI on 127.0.0.1:4200")
    p.add_argument("--port", type=int, default=4200)
    p = sub.add_parser("tune", help="Optuna hyper-parameter search -> data/tuning/<case>-best.yaml")
    p.add_argument("case", choices=CASES)
    _common(p)
    return ap


def run_stage(command: str, case: str, params) -> str:
    """Run one stage's pure function and describe its result in one line."""
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
    stages.evaluate_stage(case, cfg, log=log)
    return f"evaluated {case} -> {paths.reports / 'metrics.json'}\n" + (paths.reports / "report.md").read_text()


def _ui(port: int) -> int:
    import subprocess

    env = {**os.environ, "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port)}
    print(f"Prefect UI on http://127.0.0.1:{port} — in other shells: export PREFECT_API_URL="
          f"http://127.0.0.1:{port}/api", file=sys.stderr)
    return subprocess.call([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                            "--port", str(port)], env=env)


def dispatch(args) -> str:
    from r2n2.config import load_params

    if args.command == "ui":
        raise SystemExit(_ui(args.port))
    params = load_params(Path(args.params), args.overrides)
    if args.command in STAGE_HELP:
        if args.prefect or os.environ.get("PREFECT_API_URL"):
            from .stages import stage_flow

            result = stage_flow(args.command, args.case, args.params, args.overrides)
            return f"{args.command} {args.case}: {result}"
        return run_stage(args.command, args.case, params)
    if args.command == "pipeline":
        from .stages import pipeline_flow

        pipeline_flow(args.case, args.params, args.overrides)
        return f"pipeline {args.case} finished; reports under data/reports/"
    if args.command == "predict":
        from r2n2.champion import champion_dir
        from r2n2.paths import CasePaths
        from r2n2.predict import predict_file

        paths = CasePaths(args.case)
        model = Path(args.model) if args.model else (champion_dir(paths) / "model.pt")
        if not args.model and not model.is_file():
            model = paths.model_dir / "model.pt"
        out = predict_file(model, args.input, args.output, params.case(args.case))
        return f"wrote {len(out)} predictions from {model} -> {args.output}"
    if args.command == "monitor":
        from .monitor import monitor_flow

        result = monitor_flow(args.case, args.params, trigger_retrain=not args.no_retrain)
        results = result if args.case == "all" else {args.case: result}
        return "\n".join(f"{c}: {'DRIFT: ' + '; '.join(r['reasons']) if r['drift'] else 'no drift'}"
                         for c, r in results.items())
    if args.command == "retrain":
        from .retrain import retrain_flow

        decisions = retrain_flow(cases=params.serve.cases, push=not args.no_push)
        return "\n".join(f"{d['case']}: {d['reason']}" for d in decisions)
    if args.command == "serve":
        if not os.environ.get("PREFECT_API_URL"):
            from r2n2.errors import ConfigError

            raise ConfigError("`r2n2 serve` needs a running Prefect server: start one with `make ui` (or `r2n2 ui`) "
                              "and export PREFECT_API_URL=http://127.0.0.1:4200/api in this shell.")
        from .serve import serve

        serve(params, args.params)
        return "serve stopped"
    if args.command == "tune":
        from .tune import tune_flow

        best = tune_flow(args.case, args.params, args.overrides)
        return f"best {args.case} trial: {best}"
    raise SystemExit(f"unknown command {args.command}")


def _file_overrides(files: list[str]) -> list[str]:
    import yaml

    from r2n2.errors import ConfigError

    out = []
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise ConfigError(f"--set-file {f} does not exist.")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"--set-file {f} must hold a mapping of dotted keys to values.")
        out += [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                for k, v in data.items()]
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from r2n2.errors import R2N2Error, ValidationFailed

    try:
        if getattr(args, "set_files", None):
            args.overrides = _file_overrides(args.set_files) + args.overrides  # explicit --set wins
        message = dispatch(args)
    except ValidationFailed as exc:
        print(f"r2n2 {args.command}: {exc}", file=sys.stderr)
        return EXIT_VALIDATION
    except R2N2Error as exc:
        print(f"r2n2 {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():  # launched by torchrun
            dist.destroy_process_group()
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
