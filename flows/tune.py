"""`r2n2 tune <case>`: an Optuna study whose trials run as Prefect tasks.

Storage is SQLite under data/tuning/<case>.db, so a killed study resumes (trials it left running are
marked failed and re-run). Trials run on a thread pool (`tune.workers`) or, when `tune.dask_address` is
set, on that Dask cluster through prefect-dask. The best parameters go to data/tuning/<case>-best.yaml as
dotted overrides: `r2n2 pipeline <case> --set-file data/tuning/<case>-best.yaml`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE

from r2n2.registry import get_case, load_params
from r2n2.errors import ConfigError, R2N2Error

TUNING_DIR = Path("data") / "tuning"


def _storage(case: str):
    import optuna

    TUNING_DIR.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(TUNING_DIR / f'{case}.db').resolve()}"
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})


def _study(case: str, seed: int):
    import optuna

    from r2n2.tune import direction

    return optuna.create_study(study_name=case, storage=_storage(case), direction=direction(get_case(case)),
                               sampler=optuna.samplers.TPESampler(seed=seed),
                               pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
                               load_if_exists=True)


@task(cache_policy=NONE, task_run_name="trial-{trial_number}")
def trial_task(case: str, trial_id: int, trial_number: int, params_path: str, overrides: list[str],
               epochs: int, seed: int, root: str) -> dict:
    """One trial, in whatever process the task runner chose: reattach to the study through its storage."""
    import optuna

    from r2n2.tune import objective

    os.chdir(root)  # Dask workers may start elsewhere
    # a sampler of its own per trial (a fresh one seeded alike would draw the same start-up values every time)
    study = _study(case, seed + trial_number)
    trial = optuna.trial.Trial(study, trial_id)
    cfg = load_params(params_path, overrides).case(case)
    try:
        return {"value": objective(trial, get_case(case), cfg, epochs=epochs), "state": "complete"}
    except optuna.TrialPruned as exc:
        return {"value": None, "state": "pruned", "reason": str(exc)}
    except R2N2Error as exc:  # a configuration the data cannot hold (e.g. a lookback longer than a split)
        return {"value": None, "state": "infeasible", "reason": str(exc)}


def _task_runner(workers: int, dask_address: str | None):
    if dask_address:
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise ConfigError("tune.dask_address is set but prefect-dask is not installed: "
                              "pip install 'r2n2[dask]'.") from None
        return DaskTaskRunner(address=dask_address)
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=workers)


def tune_flow(case: str, params_path: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    """Run the study with the task runner params ask for; returns the best trial's parameters."""
    params = load_params(params_path, overrides)
    t = params.tune
    return _tune.with_options(task_runner=_task_runner(t.workers, t.dask_address))(case, params_path, overrides)


@flow(name="tune", flow_run_name="tune-{case}", persist_result=False)
def _tune(case: str, params_path: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    import optuna
    import torch
    from optuna.trial import TrialState

    from r2n2.tune import overrides_from

    log = get_run_logger()
    params = load_params(params_path, overrides)
    params.case(case)
    t = params.tune
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not t.dask_address:  # threads share the process: split the cores between concurrent trials
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // t.workers))
    study = _study(case, t.seed)
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(stale.number, state=TrialState.FAIL)  # left running by a killed study
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    remaining = max(0, t.n_trials - done)
    log.info(f"{done} trials already finished; running up to {remaining} more")
    start = time.monotonic()
    root = str(Path.cwd())
    refunds = 0
    while remaining > 0 and not (t.timeout and time.monotonic() - start > t.timeout):
        wave = [study.ask() for _ in range(min(t.workers, remaining))]
        futures = [trial_task.submit(case, tr._trial_id, tr.number, params_path, list(overrides or []), t.epochs,
                                     t.seed, root) for tr in wave]
        for tr, fut in zip(wave, futures):
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - a crashed trial must not end the study
                log.warning(f"trial {tr.number} failed: {exc}")
                study.tell(tr.number, state=TrialState.FAIL)
                continue
            if res["state"] == "pruned":
                study.tell(tr.number, state=TrialState.PRUNED)
            elif res["state"] == "infeasible":
                log.info(f"trial {tr.number} is infeasible for this data: {res['reason'][:300]}")
                study.tell(tr.number, state=TrialState.FAIL)
                refunds += 1
                remaining += refunds <= t.n_trials  # an infeasible configuration does not use up the budget (once)
            else:
                study.tell(tr.number, res["value"])
        remaining -= len(wave)
    trials = study.get_trials(deepcopy=False)
    create_table_artifact([{"trial": tr.number, "state": tr.state.name, "value": tr.value, **tr.params}
                           for tr in trials], key=f"{case}-tuning", description=f"{case}: Optuna trials")
    complete = [tr for tr in trials if tr.state == TrialState.COMPLETE]
    if not complete:
        raise ConfigError(f"no {case} trial completed; see the {case}-tuning artifact.")
    best = study.best_trial
    from r2n2.tune import suggest

    fixed = optuna.trial.FixedTrial(best.params)
    out = overrides_from(get_case(case), suggest(fixed, get_case(case)))
    path = TUNING_DIR / f"{case}-best.yaml"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"# best of {len(complete)} complete trials: validation {best.value:.6g} (trial {best.number})\n"
                   + yaml.safe_dump(out, sort_keys=True))
    tmp.replace(path)
    log.info(f"best trial {best.number}: {best.value:.5g} -> {path}")
    return {"value": best.value, "trial": best.number, **out}
