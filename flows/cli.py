"""The `r2n2` command: every stage from the shell, reading params.yaml with dotted `--set` overrides.

Stage commands run the pure stage function directly, or as a Prefect flow run (visible in the UI) when
PREFECT_API_URL is set or `--prefect` is given. `pipeline`, `retrain`, `monitor`, `serve` and `tune` always
use Prefect. Expected failures (bad params, bad data, failed validation) print one paragraph and exit
non-zero with no traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from r2n2.errors import CheckpointError, ConfigError, DataError, R2N2Error, ValidationFailed
from r2n2.evaluate.report import headline
from r2n2.io import write_parquet_atomic, write_text_atomic
from r2n2.paths import CasePaths
from r2n2.verify import DEFAULT_RTOL, compare, read_pair, render
from .dvcrun import INTERRUPT_HOOKS, STAGE_LOG_ENV, append_stage_log, write_stage_error
from .failures import ApiLost, hold_retrain_lock
from .startup import run_with_prefect_startup
from .ui import run_ui

for _var, _val in (("PREFECT_SERVER_ANALYTICS_ENABLED", "false"), ("DVC_NO_ANALYTICS", "1"),
                   ("GX_ANALYTICS_ENABLED", "false")):
    os.environ.setdefault(_var, _val)


def _pin_openblas_kernel() -> None:
    """One OpenBLAS kernel for numpy and scipy on every x86-64 CPU with AVX2 (set before numpy loads; a value in
    the environment wins). OpenBLAS picks its kernel by CPU, and kernels round differently in the last bits: on
    this project's AMD EPYC, numpy 2.4.6's OpenBLAS picks SkylakeX, and the stocks report's test statistics move
    by ~1e-15, the volatility report's GJR-GARCH-t numbers by up to 1e-4; Haswell gives the committed bytes
    (2026-12-05, docs/reproducibility.md)."""
    import platform

    if "OPENBLAS_CORETYPE" in os.environ or platform.machine() not in ("x86_64", "AMD64"):
        return
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return
    if " avx2" in flags:  # Haswell's kernel needs AVX2
        os.environ["OPENBLAS_CORETYPE"] = "Haswell"


_pin_openblas_kernel()


# Commands whose torch work runs in this process (training, scoring); the others never wait on OpenMP threads.
_COMPUTE_COMMANDS = {"train", "baselines", "finetune", "evaluate", "seeds", "retrain", "replay", "tune", "predict",
                     "monitor"}


def _openmp_wait_policy(argv: list[str]) -> None:
    """Idle OpenMP threads sleep (``OMP_WAIT_POLICY=PASSIVE``) when other work keeps this machine's cores busy as
    a computing command starts; set before torch loads its libgomp. With libgomp's default a thread that finds
    no work spins up to 300,000 times: beside a busy core the two torch threads take turns spinning on the one
    free core, and a sentiment epoch took 3.0x its quiet time (PASSIVE: 1.07x). On a quiet machine PASSIVE costs
    about a quarter (threads sleep and wake at every operation), so it is chosen only when a 0.1 s sample finds
    at least half a core busy (psutil). The policy decides how threads wait, not how sums split: the bytes are
    the same either way (benchmarks/threads.py compares them; docs/scale.md). A value in the environment wins;
    ``GOMP_SPINCOUNT`` set alone is kept too; an empty ``OMP_WAIT_POLICY`` means libgomp's default."""
    if os.environ.get("OMP_WAIT_POLICY") == "":
        del os.environ["OMP_WAIT_POLICY"]
        return
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    if next((a for a in argv[1:] if not a.startswith("-")), None) not in _COMPUTE_COMMANDS:
        return
    import psutil

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    percent = psutil.cpu_percent(interval=0.1, percpu=True)
    if sum(percent[i] for i in cores if i < len(percent)) / 100 >= 0.5:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


_openmp_wait_policy(sys.argv)

PREFECT_HOME_DIR = ".prefect"  # the project's Prefect home: its run history, read by `r2n2 ui` / `make ui`
UI_FILE = "ui.json"            # written there by a running `r2n2 ui`: its API URL and process id
_USER_API_URL = os.environ.get("PREFECT_API_URL")  # as the user set it, before a running `r2n2 ui` is found


def _project_prefect() -> None:
    """Runs are stored in the project: ``PREFECT_HOME`` is ``.prefect/`` beside params.yaml (unless the user set
    PREFECT_HOME or PREFECT_API_URL), so the temporary server of `make run` and the server of `r2n2 ui` read and
    write one database, and the UI shows every run made in this folder. While `r2n2 ui` runs here, commands talk
    to it (its URL from .prefect/ui.json) instead of starting a temporary server beside it on the same database.
    Set before Prefect is imported."""
    if "PREFECT_HOME" in os.environ or _USER_API_URL or not Path("params.yaml").is_file():
        return
    home = Path(PREFECT_HOME_DIR).resolve()
    os.environ["PREFECT_HOME"] = str(home)
    try:
        import json

        ui = json.loads((home / UI_FILE).read_text())
        os.kill(int(ui["pid"]), 0)  # still running
        os.environ["PREFECT_API_URL"] = str(ui["api_url"])
    except (OSError, ValueError, KeyError, TypeError):
        pass


_project_prefect()

EXIT_ERROR = 2
EXIT_VALIDATION = 3


def _cases() -> list[str]:
    from r2n2.registry import REGISTRY

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
    from r2n2.registry import REGISTRY  # the row-count rule of each case

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
    from .deploy import POOL

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


def _parser() -> argparse.ArgumentParser:
    from r2n2.stages import STAGES

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
    from r2n2.ops.champion import history, rollback

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

    from r2n2.registry import get_case

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
    from r2n2.registry import get_case

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

    from r2n2.registry import get_case
    from r2n2.cases.base import WindowMeta
    from r2n2.checkpoint import load_checkpoint

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
        from r2n2.ops.champion import sync_champion

        sync_champion(paths)
    model_path = Path(args.model) if args.model else paths.champion_dir / "model.pt"
    if not args.model and not model_path.is_file():  # no champion yet: the newest trained model (ops, else research)
        from r2n2.ops.workspace import trained

        model_path = trained(args.case).model_dir / "model.pt"
    model, ck = load_checkpoint(model_path)
    if ck.get("case") != args.case:
        raise CheckpointError(f"checkpoint {model_path} is a {ck.get('case') or 'non-r2n2'} model, not {args.case}.")
    meta = WindowMeta.from_dict(json.loads(ck["window_meta"]))
    options, note = {}, ""
    if case.probabilities:  # temperature and conformal thresholds: the evaluate stage's, for these very bytes
        from r2n2.cases.base import CALIBRATION_FILE, read_predict_calibration

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
    from r2n2.registry import load_params

    with hold_retrain_lock(Path("data") / "ops" / ".retrain.lock"):  # flows.retrain.LOCK_PATH, before Prefect loads
        params = load_params(Path(args.params), args.overrides)
        for c in args.cases:
            params.case(c)
        from .retrain import run_retrain

        decisions = run_retrain(args.cases or params.serve.cases, args.params, args.overrides,
                                push=not args.no_push, cuts=args.cuts)
    return "\n".join(f"{d['case']}: {d['reason']}" for d in decisions)


def _stage(args, params) -> str:
    params.case(args.case)
    under_pipeline = bool(os.environ.get(STAGE_LOG_ENV))  # DVC runs it for a pipeline task, which records it
    if args.prefect or (_USER_API_URL and not under_pipeline):
        from .stages import run_stage_flow

        return run_stage_flow(args.command, args.case, args.params, args.overrides)
    from r2n2.registry import run_stage

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
    from .stages import run_pipeline

    results = run_pipeline(args.case, args.params)
    ran = sum("reproduced by DVC" in str(m) for m in (results or {}).values())
    return (f"pipeline {args.case} finished: {ran} of {len(results or {})} stages reproduced by DVC, the others up to "
            "date; reports under data/reports/, the run in the Prefect UI (`r2n2 ui`)")


def _monitor(args, params) -> str:
    from .monitor import run_monitor

    results = run_monitor(args.case, args.params, args.overrides, trigger_retrain=not args.no_retrain)
    # per case: the verdict (rows judged, signal vs threshold), its calibration, monitor.json, what happens next
    return "\n".join("\n".join(r.get("lines") or [f"{c}: {r['verdict']}"]) for c, r in results.items())


def _replay(args, params) -> str:
    from .replay import run_replay

    return run_replay(args.case, args.params, args.overrides, start=args.start, end=args.end,
                      retrain_every=args.retrain_every, monitor_every=args.monitor_every,
                      warm_start=args.warm_start, batch=args.batch, workers=args.workers,
                      dask_address=args.dask_address, threads=args.threads)


def _serve(args, params) -> str:
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError("`r2n2 serve` needs a running Prefect server: start one with `make ui` (or `r2n2 ui`) "
                          "and export PREFECT_API_URL=http://127.0.0.1:4200/api in this shell.")
    from .serve import serve

    serve(params, args.params)
    return "serve stopped"


def _deploy(args, params) -> str:
    from .deploy import deploy_command

    return deploy_command(args, params)


def _tune(args, params) -> str:
    from .tune import tune_flow

    best = run_with_prefect_startup(tune_flow, args.case, args.params, args.overrides)
    return f"best {args.case} trial: {best}"


def _seeds(args, params) -> str:
    from .seeds import run_seeds

    if args.n < 2:
        raise ConfigError(f"--n must be at least 2 seeds (an across-seed spread needs two), got {args.n}.")
    return run_seeds(args.case, params.case(args.case), n=args.n, log=_log(args.case, "seeds"))


def _dvc_yaml(args, params) -> str:
    from .dvcgen import add_opt_in, check_or_write

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


def dispatch(args) -> str | tuple[str, int]:
    from r2n2.registry import load_params
    from r2n2.stages import STAGE_NAMES

    if args.command in EARLY:
        return EARLY[args.command](args)
    params = load_params(Path(args.params), args.overrides)
    if getattr(args, "case", "all") != "all":
        params.case(args.case)  # one paragraph naming the cases and instances params define
    handler = _stage if args.command in STAGE_NAMES else COMMANDS.get(args.command)
    if handler is None:
        raise SystemExit(f"unknown command {args.command}")
    return handler(args, params)


def _file_overrides(files: list[str]) -> list[str]:
    import yaml

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


_ENDED_WITHOUT_API: list[bool] = []
_CONSOLE: list[bool] = []  # set by `entry`: this process is the `r2n2` command, not a caller of `main`


def _last_words():
    """A stream on the terminal's stderr for the closing paragraph, after pointing file descriptor 2 (and so
    every other writer in this process) at /dev/null: Prefect's background log and event workers, still
    retrying the dead server, printed "All connection attempts failed" after the paragraph (seen 2026-12-05 in
    tests/test_flow_failures.py's dead-server test), so the paragraph was not the last line. The paragraph starts
    on a line of its own: a thread that wrote half a line just before (its text reached the terminal, its newline
    /dev/null) ran into it (CI, 2026-12-06)."""
    real = os.fdopen(os.dup(2), "w")  # no flush first: a half-written line of another thread goes to /dev/null
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    real.write("\n")
    return real


def entry() -> None:
    """The `r2n2` console command: ``main``'s exit code. After a lost Prefect API it leaves at once: Prefect's
    exit handlers would otherwise retry every queued run event against the dead server for minutes (measured: a
    pipeline whose server was killed mid-run had not exited 90 s after printing its error)."""
    _CONSOLE.append(True)
    for signum in EXIT_SIGNAL:
        signal.signal(signum, _on_signal)

    INTERRUPT_HOOKS.append(interrupted_by)
    code = main()
    if _ENDED_WITHOUT_API:
        try:  # a temporary server of this process: stop it (os._exit skips the exit handler that would)
            from prefect.server.api.server import SubprocessASGIServer

            for server in list(getattr(SubprocessASGIServer, "_instances", {}).values()):
                server.stop()
        except Exception:  # noqa: BLE001 - leaving is what matters here
            pass
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    try:
        if getattr(args, "set_files", None):
            args.overrides = _file_overrides(args.set_files) + args.overrides  # explicit --set wins
        message = dispatch(args)
    except ValidationFailed as exc:
        if not _stage_error(str(exc), EXIT_VALIDATION):
            print(f"r2n2 {args.command}: {exc}", file=sys.stderr)
        return EXIT_VALIDATION
    except KeyboardInterrupt:
        return _interrupted_exit(args.command)
    except R2N2Error as exc:
        if _INTERRUPTED:  # the signal also stopped the temporary server: the interruption is the news
            return _interrupted_exit(args.command)
        if _stage_error(str(exc), EXIT_ERROR):  # the pipeline task says it, once
            return EXIT_ERROR
        out = sys.stderr
        if isinstance(exc, ApiLost):  # see `entry`: nothing is left to hand to a server that is gone
            _ENDED_WITHOUT_API.append(True)
            if _CONSOLE:
                out = _last_words()
        print(f"r2n2 {args.command}: {exc}", file=out, flush=True)
        return EXIT_ERROR
    finally:
        if "torch" in sys.modules:  # launched by torchrun: leave the process group cleanly
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
    message, code = message if isinstance(message, tuple) else (message, 0)  # `verify` exits 1 when a number moved
    print(message)
    if message:
        append_stage_log(str(message).splitlines()[0])
    return code


# -- interrupts: Ctrl-C (SIGINT) and SIGTERM end in one paragraph ------------------------------------------------
_INTERRUPTED: list[int] = []   # the signal that stopped this command
_SILENCED: list = []           # the terminal's stderr, kept for the closing paragraph once fd 2 is silenced
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _stage_children() -> list:
    """This process's descendants but Prefect's temporary server: the stage command DVC runs for a pipeline task.
    (The server stays up so that the run's Crashed state reaches the UI; Prefect stops it when we leave.)"""
    import psutil

    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            line = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "prefect.server" not in line and "uvicorn" not in line:
            out.append(child)
    return out


def _silence() -> None:
    """From now on nothing but the closing paragraph reaches the terminal: Prefect's event and log workers, whose
    server may have died with the same signal, would dump their retries and "Finished in state Running()"."""
    if _CONSOLE and not _SILENCED:
        sys.stderr.flush()
        _SILENCED.append(_last_words())


def _on_signal(signum: int, frame) -> None:
    """SIGINT / SIGTERM: the stage command under way (a DVC child) gets the same signal and puts its previous
    outputs back; this process stops with KeyboardInterrupt. During a flow run Prefect handles SIGTERM first (it
    marks the task and flow runs Crashed, then hands the signal on to this handler)."""
    first = not _INTERRUPTED
    _INTERRUPTED.append(signum)
    if first:
        import psutil

        children = _stage_children()
        for child in children:
            try:
                child.send_signal(signum)
            except psutil.Error:
                pass
        psutil.wait_procs(children, timeout=60)  # each puts its previous outputs back before it exits
        _silence()
    raise KeyboardInterrupt


def interrupted_by(code: int) -> None:
    """A stage command ended by a signal (exit 130 / 143) under a pipeline task: this command is interrupted too."""
    signum = {v: k for k, v in EXIT_SIGNAL.items()}.get(code, signal.SIGINT)
    if not _INTERRUPTED:
        _INTERRUPTED.append(signum)
        _silence()


def _interrupted_exit(command: str) -> int:
    signum = _INTERRUPTED[0] if _INTERRUPTED else signal.SIGINT
    code = EXIT_SIGNAL.get(signum, 130)
    if os.environ.get(STAGE_LOG_ENV):  # a stage under a pipeline task: the task says it
        write_stage_error("interrupted", code)
        return code
    name = signal.Signals(signum).name
    paragraph = (f"r2n2 {command}: interrupted ({name}). Stages that had finished kept their outputs (and, under "
                 "`make run` / `r2n2 pipeline`, their dvc.lock entries); the interrupted stage put its previous "
                 "outputs back. Rerun the same command to go on: DVC reruns only what is not up to date, and "
                 "training resumes from its last finished epoch.")
    _ENDED_WITHOUT_API.append(True)  # leave at once: Prefect's exit handlers would retry a dead server for minutes
    out = _SILENCED[0] if _SILENCED else (_last_words() if _CONSOLE else sys.stderr)
    print(paragraph, file=out, flush=True)
    return code


def _stage_error(message: str, code: int) -> bool:
    """Under a pipeline task, the closing paragraph and exit code go to the task, which says them (True)."""
    return write_stage_error(message, code)


if __name__ == "__main__":
    entry()
