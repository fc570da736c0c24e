"""The `r2n2` subcommands: the argument table (``parser``) and what each command does (``run``). Imported by
``flows.cli`` once the environment is pinned (OpenBLAS kernel, OpenMP wait policy, Prefect's home): this module
loads numpy, pandas and the case registry. Prefect's flows and torch still load only in the commands that use
them (a `headline` or a `--help` starts without either)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from r2n2.cases.base import CALIBRATION_FILE, WindowMeta, read_predict_calibration
from r2n2.errors import CheckpointError, ConfigError, DataError
from r2n2.evaluate.report import headline
from r2n2.io import write_parquet_atomic, write_text_atomic
from r2n2.ops.workspace import trained
from r2n2.paths import CasePaths
from r2n2.registry import REGISTRY, get_case, load_params, run_stage
from r2n2.stages import STAGE_NAMES, STAGES
from r2n2.verify import DEFAULT_RTOL, compare, read_pair, render

from .deploy import POOL, deploy_command
from .dvcgen import add_opt_in, check_or_write
from .dvcrun import STAGE_LOG_ENV, append_stage_log
from .failures import hold_retrain_lock
from .seeds import run_seeds
from .startup import run_with_prefect_startup
from .ui import run_ui

__all__ = ["parser", "run", "SUBCOMMANDS", "COMMANDS", "EARLY"]


def _cases() -> list[str]:
    return list(REGISTRY)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a params key, value parsed as YAML (repeatable): --set stocks.train.epochs=2")
    p.add_argument("--set-file", dest="set_files", action="append", default=[], metavar="YAML",
                   help="overrides from a YAML mapping of dotted keys, e.g. data/tuning/stocks-best.yaml")


def _case_arg(p: argparse.ArgumentParser, cases: list[str], *, every: bool = False, optional: bool = False) -> None:
    """The case argument: a built-in case or an instance params.yaml defines (checked once params are read)."""
    what = f"a case ({', '.join(cases)}) or an instance params.yaml defines" + (", or all" if every else "")
    kw = {"nargs": "?", "default": "all"} if optional else {}
    p.add_argument("case", metavar="case", help=what, **kw)


def _args_pipeline(p, cases) -> None:
    _case_arg(p, cases, every=True)


def _args_predict(p, cases) -> None:
    _case_arg(p, cases)
    p.add_argument("--input", required=True, help="CSV or Parquet with the training data's schema (see above)")
    p.add_argument("--output", required=True, help="output file: .parquet or .csv")
    p.add_argument("--model", help="checkpoint (default: the champion, else data/models/<case>/model.pt)")
    p.add_argument("--uncalibrated", action="store_true",
                   help="text cases: the raw softmax instead of the temperature-scaled probabilities")
    p.add_argument("--sets", type=float, metavar="LEVEL",
                   help="text cases: add set_<LEVEL>, each text's conformal label set (APS, split-conformal on the "
                        "validation texts) that holds the true label with probability LEVEL: 0.50 to 0.99 in "
                        "steps of 0.01, e.g. 0.9; labels joined by |")


def _predict_description(cases) -> str:
    return ("Predictions for the rows of a new file from the checkpoint alone: its window, features, scalers and "
            "model as trained (so --set takes only the keys that say how --input is read, e.g. "
            "stocks.data.columns; any other key is refused). Price cases read daily prices (columns Date, Close "
            "and, as the model was trained, Open, High, Low, Volume; an Entity column for several series); each "
            "forecast has its origin_date (the last input day), target_date (the day forecast) and horizon_days; "
            "a model with a distribution head adds q<level> quantile columns (q0.05, ...). Rows out, lookback "
            "being the model's window.lookback: " + "; ".join(f"{n}: {REGISTRY[n].predict_rule()}" for n in cases)
            + ". Text cases read a text column and give class probabilities, temperature-scaled as the evaluate "
            "stage fitted them on the validation texts for that very model (data/reports/<case>/calibration.json, "
            "matched by sha256; another model, e.g. a champion retrained in data/ops/, gets the raw softmax and "
            "the summary says so). Example: docs/predict_example.csv.")


def _args_monitor(p, cases) -> None:
    _case_arg(p, cases, every=True)
    p.add_argument("--no-retrain", action="store_true",
                   help="report only: an alarm does not start `r2n2 retrain <case>` (the verdict says so)")


def _args_retrain(p, cases) -> None:
    p.add_argument("cases", nargs="*", metavar="case", help=f"cases to retrain ({', '.join(cases)}; default: serve.cases)")
    p.add_argument("--no-push", action="store_true",
                   help="skip the final `dvc push` of the DVC cache (the champion's new version with it) to the project's DVC "
                        "remote; the version stays in the local cache")
    p.add_argument("--cuts", choices=("rolling", "fixed"), default="rolling",
                   help="rolling (default): cut dates follow the data (newest window.holdout_days decide the "
                        "promotion, the window.val_days before them early-stop); fixed: `dvc repro` with "
                        "params.yaml's cut dates")


def _args_replay(p, cases) -> None:
    _case_arg(p, cases)
    p.add_argument("--start", required=True, help="first simulated time, in the case's time units: a date (prices; "
                   "texts with a time column) or an arrival index (texts without one, e.g. the built-in corpus)")
    p.add_argument("--end", required=True, help="last simulated date or arrival index (inclusive)")
    p.add_argument("--retrain-every", type=int, default=21, help="steps (trading days, or arrival batches for texts) "
                   "between scheduled retrains")
    p.add_argument("--monitor-every", type=int, default=5, help="steps between monitor checks")
    p.add_argument("--retrain-policy", choices=("both", "schedule", "alarm"), default="both",
                   help="when a step retrains: every --retrain-every steps and after an alarm (both, default), on "
                   "the schedule only, or only after an alarm")
    p.add_argument("--batch", type=int, default=None, help="texts only: texts per arrival batch, the step of a text "
                   "replay (default 500); an error for price cases, whose step is one trading day")
    p.add_argument("--warm-start", action="store_true", help="retrain from the champion's weights (and tokenizer)")
    p.add_argument("--workers", type=int, default=1, help="local Dask worker processes that train the scheduled "
                   "from-scratch challengers in parallel before the calendar walk (default 1: sequential)")
    p.add_argument("--dask-address", default=None, help="a running Dask scheduler (tcp://host:8786) to train them "
                   "on instead of local workers")
    p.add_argument("--threads", type=int, default=None, help="torch threads per training (train.threads); default: "
                   "the cores / --workers with several workers, else params.yaml's")


def _args_deploy(p, cases) -> None:
    p.add_argument("--pool", default=POOL, help=f"the work pool's name (default: {POOL})")


def _args_ui(p, cases) -> None:
    p.add_argument("--port", type=int, default=4200, help="port of the Prefect server and UI (default: 4200)")
    p.add_argument("--files-port", type=int, default=4201,
                   help="port of the report file server: data/reports/ over http, e.g. validation.html (default: 4201; "
                        "the artifacts' pictures are embedded and need no server)")


def _args_seeds(p, cases) -> None:
    _case_arg(p, cases)
    p.add_argument("--n", type=int, default=5, help="seeds: train.seed, +1, ... (default 5)")


def _args_champion(p, cases) -> None:
    p.add_argument("action", choices=("history", "rollback"),
                   help="history: every version, when it served and on which data; rollback: serve an earlier one")
    _case_arg(p, cases)
    p.add_argument("--to", help="rollback: the version (or a unique prefix) from `r2n2 champion history`")


def _args_verify(p, cases) -> None:
    _case_arg(p, cases, every=True, optional=True)
    p.add_argument("--rev", default="HEAD", help="the commit to compare with (default: HEAD)")
    p.add_argument("--rtol", type=float, default=None,
                   help="relative tolerance where the report has no seed spread (default: 1e-06, float rounding)")


def _args_dvc_yaml(p, cases) -> None:
    p.add_argument("--check", action="store_true",
                   help="write nothing: exit 1 if dvc.yaml differs from what the stage table and params.yaml give")
    p.add_argument("--tune", nargs="+", metavar="CASE",
                   help="add tune@CASE to data/tuning/dvc.yaml (run it: dvc repro data/tuning/dvc.yaml:tune@CASE)")
    p.add_argument("--seeds", nargs="+", metavar="CASE",
                   help="add seeds@CASE to data/seeds/dvc.yaml (run it: dvc repro data/seeds/dvc.yaml:seeds@CASE)")


def _one_case(p, cases) -> None:
    _case_arg(p, cases)


def _any_cases(p, cases) -> None:
    _case_arg(p, cases, every=True, optional=True)


# The subcommands after the stages, in --help's order: (name, help, description or a function of the cases
# giving it, the function that adds its arguments, whether it takes the common options --set / --params).
SUBCOMMANDS = (
    ("pipeline", "every stage as one Prefect flow run: a task per stage and case, each reproduced by DVC (what "
                 "`make run` runs); runs kept in .prefect/", None, _args_pipeline, True),
    ("predict", "batch predictions for a new CSV / Parquet file", _predict_description, _args_predict, True),
    ("monitor", "score the champion on data after its training cut-off; alarm on real change",
     "Check the deployed model (the champion, else the latest trained model) on the newest monitor.window rows "
     "after its cut-off: its inputs, forecasts and error against thresholds calibrated on its own history (at most "
     "monitor.family_rate false alarms per check), and a CUSUM of its loss vs the naive benchmark. Prints per case "
     "the verdict (the rows judged, the signal and its threshold), how the threshold was calibrated, where the full "
     "result is (data/ops/<case>/reports/<case>/monitor.json) and what happens next: an alarm retrains that case "
     "now unless --no-retrain or monitor.retrain_on_alarm: false.", _args_monitor, True),
    ("retrain", "a challenger trained on the newest data (rolling cuts, in data/ops/<case>/), promoted unless worse "
                "on days neither model saw; --cuts fixed: dvc repro", None, _args_retrain, True),
    ("replay", "a simulated calendar over real history: monitor, retrain, promote",
     "The deployed loop under a simulated clock: each retrain runs the case's window and train stages with rolling "
     "cut dates on the data known that day. A price replay's period must hold at least 2 x --retrain-every trading "
     "days, and enough days before --start to train a first model (window.val_days + holdout_days + training).",
     _args_replay, True),
    ("serve", "serve the scheduled retrain and monitor deployments (needs `r2n2 ui`)", None, None, True),
    ("deploy", "register the retrain and monitor deployments on a Prefect process work pool",
     "The deployments of `r2n2 serve` (same names, crons, parameters) on a process work pool, created if missing; "
     "runs execute in this folder on the machine that runs `prefect worker start --pool <pool>` (docs/deploy.md). "
     "Needs PREFECT_API_URL.", _args_deploy, True),
    ("ui", "start the Prefect server and UI on 127.0.0.1:4200", None, _args_ui, False),
    ("tune", "Optuna hyper-parameter search -> data/tuning/<case>-best.yaml", None, _one_case, True),
    ("seeds", "train, baselines, finetune, evaluate with --n seeds on the pipeline's windows, in a scratch folder "
              "-> data/seeds/<case>/metrics.json, report.md", None, _args_seeds, True),
    ("champion", "the champion's versions: history, or roll back to one", None, _args_champion, True),
    ("headline", "one table per case: the model beside its baselines on the test period", None, _any_cases, True),
    ("verify", "compare a run's headline numbers with the committed report's",
     "Each headline number of data/reports/<case>/metrics.json (the model and every baseline, as `r2n2 headline` "
     "shows them) beside its committed version (git show REV:<path>): difference, tolerance (3 sd over seeds where "
     "the committed report holds a seed spread, else --rtol of the committed value) and 'reproduced within "
     "tolerance' or 'MOVED'. Exit 0: all within tolerance; 1: something moved; 2: a file is missing or not in git.",
     _args_verify, True),
    ("dvc-yaml", "write dvc.yaml from the stage table (--check: fail if it differs); --tune CASE...: add the opt-in "
                 "Optuna stages to data/tuning/dvc.yaml", None, _args_dvc_yaml, True),
)


def parser() -> argparse.ArgumentParser:
    cases = _cases()
    ap = argparse.ArgumentParser(prog="r2n2", description="Relational RNN pipeline: stages, flows, serving.")
    sub = ap.add_subparsers(dest="command", required=True)
    for st in STAGES:
        p = sub.add_parser(st.name, help=st.help)
        _case_arg(p, cases)
        p.add_argument("--prefect", action="store_true", help="run as a Prefect flow even without PREFECT_API_URL")
        _common(p)
    for name, help_, description, add_args, common in SUBCOMMANDS:
        p = sub.add_parser(name, help=help_,
                           description=description(cases) if callable(description) else description)
        if add_args is not None:
            add_args(p, cases)
        if common:
            _common(p)
    return ap


def _log(case: str, command: str):
    def log(msg: str) -> None:
        line = f"[{case} {command}] {msg}"
        if not append_stage_log(line):  # under a pipeline task, its run logger prints it (and the UI shows it)
            print(line, file=sys.stderr, flush=True)

    return log


def _champion(args) -> str:
    from r2n2.ops.champion import history, rollback  # torch

    paths = CasePaths(args.case).operations()  # the champion registry: data/ops/<case>/champion/
    if args.action == "rollback":
        if not args.to:
            raise ConfigError("`r2n2 champion rollback` needs --to VERSION (see `r2n2 champion history "
                              f"{args.case}`).")

        with hold_retrain_lock(Path("data") / "ops" / ".retrain.lock"):  # never beside a retrain's promotion
            e = rollback(paths, args.to)
        return f"{args.case}: serving version {e['version']} again ({e['action']}) -> {paths.champion_dir / 'model.pt'}"
    rows = history(paths)
    if not rows:
        return f"{args.case}: no champion promoted yet ({paths.champion_dir / 'history.json'} does not exist)."
    lines = [f"{'version':<13}{'action':<24}{'served from':<27}{'data through':<14}{'train end':<12}evidence"]
    for e in rows:
        ev = (e.get("evidence") or {})
        w = ev.get("window") or {}
        lines.append(f"{e['version']:<13}{e['action'][:23]:<24}{e['served_from']:<27}{str(e['data_through'])[:13]:<14}"
                     f"{str(e['train_end'])[:11]:<12}" + (f"{w.get('start')} .. {w.get('end')}, p {ev.get('p_value')}"
                                                          if w else "-"))
    return "\n".join(lines)


def _headline(case: str, params) -> str:
    import json


    out = []
    for name in (list(params.cases) if case == "all" else [case]):
        path = CasePaths(name).reports / "metrics.json"
        if path.is_file():
            try:
                metrics = json.loads(path.read_text())
                assert isinstance(metrics.get("model"), dict)
            except (ValueError, AssertionError, AttributeError):
                raise DataError(f"{path} is not a metrics file written by `r2n2 evaluate {name}`; rerun it.") from None
            case = get_case(name)
            out += [headline(name, metrics, case.headline_metrics, main=case.main_baseline),
                    f"full report: {CasePaths(name).reports / 'report.md'}", ""]
        else:
            out += [f"{name}: no report yet ({path} does not exist; run `r2n2 pipeline {name}`)", ""]
    return "\n".join(out).rstrip()


def _verify(args, params) -> tuple[str, int]:
    """(the comparison of every case asked for, exit code: 0 all within tolerance, 1 something moved)."""
    rtol = DEFAULT_RTOL if args.rtol is None else args.rtol
    if not rtol >= 0:
        raise ConfigError(f"--rtol must be a number >= 0, got {args.rtol}.")
    out, code = [], 0
    for name in (list(params.cases) if args.case == "all" else [args.case]):
        path = CasePaths(name).reports / "metrics.json"
        committed, now, identical = read_pair(path, name, args.rev)
        rows = compare(committed, now, get_case(name).headline_metrics, rtol=rtol)
        code = max(code, int(any(r.moved for r in rows)))
        out += [render(name, path, args.rev, rows, identical=identical), ""]
    return "\n".join(out).rstrip(), code


def _predict(args, params) -> str:
    import json

    from r2n2.checkpoint import load_checkpoint  # torch

    case = get_case(args.case)
    honoured = [f"{args.case}.{k}" for k in case.predict_keys]
    for item in args.overrides:  # a key predict would ignore is refused by name, before anything is read
        key = item.split("=", 1)[0].strip()
        if any(key == h or key.startswith(h + ".") for h in honoured):
            continue
        rest = key.removeprefix(f"{args.case}.") if key.startswith(f"{args.case}.") else None
        why = ("--input names the file to predict" if rest is not None and rest.startswith("data.source") else
               "predict uses every row of --input" if rest is not None and rest.startswith("data.until") else
               "the checkpoint fixes the window, features, scalers and model as they were trained" if rest else
               f"predict {args.case} reads no other block of params.yaml")
        after = (f" To change {key}, set it for the stages that build the model (`r2n2 window {args.case}`, `r2n2 "
                 f"train {args.case}`), then predict with the model they write." if rest and not rest.startswith("data.")
                 else "")
        raise ConfigError(f"--set {item[:80]} is not used by predict: {why}. predict honours only the keys that say "
                          f"how --input is read: {', '.join(honoured)}.{after}")
    if not case.probabilities and (args.uncalibrated or args.sets is not None):
        raise ConfigError(f"--uncalibrated and --sets apply to class probabilities; the {args.case} case predicts "
                          "numbers (a distribution head's quantiles are its q<level> columns).")
    if args.uncalibrated and args.sets is not None:
        raise ConfigError("--sets needs the calibrated probabilities its conformal thresholds were fitted on; drop "
                          "--uncalibrated.")
    out_path = Path(args.output)
    if out_path.suffix.lower() not in (".parquet", ".pq", ".csv"):
        raise DataError(f"--output {str(args.output)[:80]} must end in .parquet or .csv (the format follows the "
                        "suffix).")
    paths = CasePaths(args.case).operations()  # the champion: data/ops/<case>/champion/
    if not args.model:
        from r2n2.ops.champion import sync_champion  # torch

        sync_champion(paths)
    model_path = Path(args.model) if args.model else paths.champion_dir / "model.pt"
    if not args.model and not model_path.is_file():  # no champion yet: the newest trained model (ops, else research)

        model_path = trained(args.case).model_dir / "model.pt"
    model, ck = load_checkpoint(model_path)
    if ck.get("case") != args.case:
        raise CheckpointError(f"checkpoint {model_path} is a {ck.get('case') or 'non-r2n2'} model, not {args.case}.")
    meta = WindowMeta.from_dict(json.loads(ck["window_meta"]))
    options, note = {}, ""
    if case.probabilities:  # temperature and conformal thresholds: the evaluate stage's, for these very bytes

        calibration, why = ((None, "--uncalibrated") if args.uncalibrated else
                            read_predict_calibration(CasePaths(args.case).reports / CALIBRATION_FILE, model_path))
        if calibration is None and args.sets is not None:
            raise DataError(f"--sets needs the conformal thresholds the evaluate stage fits for the model, but {why}. "
                            f"Run `r2n2 evaluate {args.case}` for it, or predict with the model it evaluated "
                            f"(--model {CasePaths(args.case).model_dir / 'model.pt'}).")
        options = {"calibration": calibration, "sets": args.sets}
        note = (f"; probabilities calibrated ({why})" if calibration else
                "; raw softmax probabilities (--uncalibrated)" if args.uncalibrated else
                f"; probabilities UNCALIBRATED (raw softmax): {why}")
    out = case.predict(model, meta, ck, args.input, params.case(args.case), **options)
    if out_path.suffix.lower() == ".csv":
        write_text_atomic(out.to_csv(index=False), out_path)
    else:
        write_parquet_atomic(out, out_path)
    per = ""
    if "entity" in out:
        counts = out.groupby("entity", sort=False).size()
        per = f" ({', '.join(f'{e}: {n}' for e, n in counts.head(5).items())}{' ...' if len(counts) > 5 else ''})"
    return f"wrote {len(out)} predictions{per} from {model_path} -> {out_path}: {case.predict_rule(meta)}{note}"


def _ui(args) -> str:
    raise SystemExit(run_ui(args.port, files_port=args.files_port))


def _retrain(args) -> str:
    """The lock first: a second retrain exits before anything slow starts (params are read under it)."""
    with hold_retrain_lock(Path("data") / "ops" / ".retrain.lock"):  # flows.retrain.LOCK_PATH, before Prefect loads
        params = load_params(Path(args.params), args.overrides)
        for c in args.cases:
            params.case(c)
        from .retrain import run_retrain  # Prefect (2-3 s) loads only for the commands that run flows

        decisions = run_retrain(args.cases or params.serve.cases, args.params, args.overrides,
                                push=not args.no_push, cuts=args.cuts)
    return "\n".join(f"{d['case']}: {d['reason']}" for d in decisions)


def _stage(args, params) -> str:
    params.case(args.case)
    under_pipeline = bool(os.environ.get(STAGE_LOG_ENV))  # DVC runs it for a pipeline task, which records it
    if args.prefect or (getattr(args, "user_api_url", None) and not under_pipeline):
        from .stages import run_stage_flow  # Prefect

        return run_stage_flow(args.command, args.case, args.params, args.overrides)

    return run_stage(args.command, args.case, params.case(args.case), log=_log(args.case, args.command))


def _pipeline(args, params) -> str:
    if args.overrides:
        raise ConfigError("`r2n2 pipeline` has DVC run every stage, and DVC reads params.yaml only, so a --set or "
                          "--set-file would not reach it. Put the change in params.yaml (your own data: an instance, "
                          "README's 'Your own data'), use `dvc exp run -S KEY=VALUE`, or run one stage with it: "
                          "`r2n2 <stage> <case> --set ...` (outside DVC: `dvc status` then lists what it changed).")
    if Path(args.params).resolve() != Path("params.yaml").resolve():
        raise ConfigError(f"`r2n2 pipeline` has DVC run every stage, and DVC reads ./params.yaml, not "
                          f"{str(args.params)[:80]}: run it from the project folder without --params.")
    if args.case != "all":
        params.case(args.case)
    from .stages import run_pipeline  # Prefect

    results = run_pipeline(args.case, args.params)
    ran = sum("reproduced by DVC" in str(m) for m in (results or {}).values())
    return (f"pipeline {args.case} finished: {ran} of {len(results or {})} stages reproduced by DVC, the others up to "
            "date; reports under data/reports/, the run in the Prefect UI (`r2n2 ui`)")


def _monitor(args, params) -> str:
    from .monitor import run_monitor  # Prefect

    results = run_monitor(args.case, args.params, args.overrides, trigger_retrain=not args.no_retrain)
    # per case: the verdict (rows judged, signal vs threshold), its calibration, monitor.json, what happens next
    return "\n".join("\n".join(r.get("lines") or [f"{c}: {r['verdict']}"]) for c, r in results.items())


def _replay(args, params) -> str:
    from .replay import run_replay  # Prefect and torch

    return run_replay(args.case, args.params, args.overrides, start=args.start, end=args.end,
                      retrain_every=args.retrain_every, monitor_every=args.monitor_every,
                      warm_start=args.warm_start, batch=args.batch, workers=args.workers,
                      dask_address=args.dask_address, threads=args.threads, retrain_policy=args.retrain_policy)


def _serve(args, params) -> str:
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError("`r2n2 serve` needs a running Prefect server: start one with `make ui` (or `r2n2 ui`) "
                          "and export PREFECT_API_URL=http://127.0.0.1:4200/api in this shell.")
    from .serve import serve  # Prefect

    serve(params, args.params)
    return "serve stopped"


def _deploy(args, params) -> str:
    return deploy_command(args, params)


def _tune(args, params) -> str:
    from .tune import tune_flow  # Prefect, Optuna and torch

    best = run_with_prefect_startup(tune_flow, args.case, args.params, args.overrides)
    return f"best {args.case} trial: {best}"


def _seeds(args, params) -> str:
    if args.n < 2:
        raise ConfigError(f"--n must be at least 2 seeds (an across-seed spread needs two), got {args.n}.")
    return run_seeds(args.case, params.case(args.case), n=args.n, log=_log(args.case, "seeds"))


def _dvc_yaml(args, params) -> str:
    if args.tune or args.seeds:
        return "\n".join(add_opt_in(params, kind, names) for kind, names in (("tune", args.tune), ("seeds", args.seeds))
                         if names)
    return check_or_write(params, check=args.check)


# The subcommands: those that run before params.yaml is read, then those handed the parsed params (every stage
# name runs its stage). Each returns the line to print, or (line, exit code).
EARLY = {"ui": _ui, "retrain": _retrain}
COMMANDS = {"pipeline": _pipeline, "predict": _predict, "monitor": _monitor, "replay": _replay, "serve": _serve,
            "deploy": _deploy, "tune": _tune, "headline": lambda args, params: _headline(args.case, params),
            "verify": _verify, "champion": lambda args, params: _champion(args), "dvc-yaml": _dvc_yaml,
            "seeds": _seeds}


def run(args) -> str | tuple[str, int]:
    """The command ``args`` names, with params.yaml (and the --set overrides) read first where it needs them."""
    if args.command in EARLY:
        return EARLY[args.command](args)
    params = load_params(Path(args.params), args.overrides)
    if getattr(args, "case", "all") != "all":
        params.case(args.case)  # one paragraph naming the cases and instances params define
    handler = _stage if args.command in STAGE_NAMES else COMMANDS.get(args.command)
    if handler is None:
        raise SystemExit(f"unknown command {args.command}")
    return handler(args, params)
