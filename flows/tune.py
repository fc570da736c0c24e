"""`r2n2 tune <case>`: an Optuna study whose trials run as Prefect tasks.

The study lives in ``tune.storage``: SQLite under data/tuning/<case>.db (the default; one process), an Optuna
journal file data/tuning/<case>.journal (several processes on one machine), or a database URL such as
postgresql://user@host/db (several machines; the study outlives any of them). A killed study resumes: trials it left
running are marked failed and re-run. Trials run on a thread pool (`tune.workers`), on a local Dask cluster of
`tune.dask_workers` processes, or on the Dask scheduler at `tune.dask_address`; on Dask through prefect-dask, so
each trial is still a Prefect task run. The best parameters go to data/tuning/<case>-best.yaml as dotted overrides:
one stage with them, `r2n2 train <case> --set-file data/tuning/<case>-best.yaml`, or, for DVC and the pipeline, the
same keys in params.yaml (e.g. an instance: ``<case>-tuned: {case: <case>, model: {...}, train: {...}}``).
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
_STORAGES: dict[str, object] = {}  # one storage (engine, connection pool) per process and study location


def _storage(case: str, spec: str = "sqlite"):
    """The Optuna storage ``tune.storage`` names; a database that cannot be reached is a ConfigError."""
    import optuna

    if spec == "journal":
        TUNING_DIR.mkdir(parents=True, exist_ok=True)
        key = str((TUNING_DIR / f"{case}.journal").resolve())
    elif spec == "sqlite":
        TUNING_DIR.mkdir(parents=True, exist_ok=True)
        key = f"sqlite:///{(TUNING_DIR / f'{case}.db').resolve()}"
    else:
        # SQLAlchemy 2.0 reads a bare postgresql:// as psycopg2, 2.1 as psycopg: take psycopg (a dependency) on both
        key = "postgresql+psycopg://" + spec.removeprefix("postgresql://") if spec.startswith("postgresql://") \
            else spec
    if key in _STORAGES:
        return _STORAGES[key]
    if spec == "journal":
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(key))  # a lock file guards each append
    else:
        storage = _rdb_storage(key, spec)
    _STORAGES[key] = storage
    return storage


def _rdb_storage(url: str, spec: str):
    import optuna
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    try:
        parsed = make_url(url)
        shown = spec if spec == "sqlite" else make_url(spec).render_as_string(hide_password=True)
    except ArgumentError:
        raise ConfigError(f"tune.storage is not a database URL SQLAlchemy can read: {spec[:80]!r}.") from None
    connect = {"sqlite": {"timeout": 60}, "postgresql": {"connect_timeout": 10}}.get(parsed.get_backend_name(), {})
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": connect})
    except (ImportError, NoSuchModuleError) as exc:
        raise ConfigError(f"tune.storage {shown}: no driver for this database is installed ({exc}).") from None
    except SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        raise ConfigError(f"tune.storage: cannot reach the database at {shown} ({reason}). Start the server, or "
                          f"check the host, port, user, password and that the database exists; "
                          f"tune.storage=journal keeps the study in a file instead.") from None


def _study(case: str, seed: int, storage: str = "sqlite"):
    import optuna

    from r2n2.tune import direction  # torch, in the trial's process only

    return optuna.create_study(study_name=case, storage=_storage(case, storage),
                               direction=direction(get_case(case)),
                               sampler=optuna.samplers.TPESampler(seed=seed),
                               pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
                               load_if_exists=True)


@task(cache_policy=NONE, task_run_name="trial-{trial_number}")
def trial_task(case: str, trial_id: int, trial_number: int, params_path: str, overrides: list[str],
               epochs: int, seed: int, root: str, storage: str = "sqlite") -> dict:
    """One trial, in whatever process the task runner chose: reattach to the study through its storage."""
    import optuna

    from r2n2.tune import objective  # torch

    os.chdir(root)  # Dask workers may start elsewhere
    # a sampler of its own per trial (a fresh one seeded alike would draw the same start-up values every time)
    study = _study(case, seed + trial_number, storage)
    trial = optuna.trial.Trial(study, trial_id)
    cfg = load_params(params_path, overrides).case(case)
    try:
        return {"value": objective(trial, get_case(case), cfg, epochs=epochs), "state": "complete"}
    except optuna.TrialPruned as exc:
        return {"value": None, "state": "pruned", "reason": str(exc)}
    except R2N2Error as exc:  # a configuration the data cannot hold (e.g. a lookback longer than a split)
        return {"value": None, "state": "infeasible", "reason": str(exc)}


def _task_runner(t):
    from prefect_dask import DaskTaskRunner

    if t.dask_address:
        return DaskTaskRunner(address=t.dask_address)
    if t.dask_workers:  # one process per trial at a time, one Dask thread each (torch's threads: see _trial_threads)
        return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                              cluster_kwargs={"n_workers": t.dask_workers, "threads_per_worker": 1, "processes": True})
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=t.workers)


def _concurrent(t) -> int:
    """Trials in flight at once: the local Dask workers, else tune.workers (threads, or tasks on a scheduler)."""
    return t.dask_workers or t.workers


def _trial_threads(t, train_threads: int) -> int | None:
    """Torch threads per trial on this machine, so concurrent trials x threads <= cores (train.threads caps it);
    None on a remote scheduler, whose cores are not known here (the params' train.threads holds there)."""
    if t.dask_address:
        return None
    share = max(1, (os.cpu_count() or 1) // _concurrent(t))
    return min(train_threads, share) if train_threads > 0 else share


def tune_flow(case: str, params_path: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    """Run the study with the task runner params ask for; returns the best trial's parameters."""
    params = load_params(params_path, overrides)
    params.case(case)
    t = params.tune
    if t.storage not in ("sqlite", "journal"):  # a database that cannot be reached fails here, before a flow or a
        _storage(case, t.storage)               # cluster starts; the files are made when the study starts
    return _tune.with_options(task_runner=_task_runner(t))(case, params_path, overrides)


@flow(name="tune", flow_run_name="tune-{case}", persist_result=False)
def _tune(case: str, params_path: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    import optuna
    import torch
    from optuna.trial import TrialState

    from r2n2.tune import overrides_from  # torch

    log = get_run_logger()
    params = load_params(params_path, overrides)
    cfg = params.case(case)
    t = params.tune
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    threads = _trial_threads(t, cfg.train.threads)
    if threads is not None:  # each trial trains with train.threads: split the cores between concurrent trials
        torch.set_num_threads(threads)
        overrides = [*(overrides or []), f"{case}.train.threads={threads}"]
    study = _study(case, t.seed, t.storage)
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(stale.number, state=TrialState.FAIL)  # left running by a killed study
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    remaining = max(0, t.n_trials - done)
    where = (f"the Dask scheduler at {t.dask_address}" if t.dask_address else
             f"{t.dask_workers} local Dask worker processes" if t.dask_workers else f"{t.workers} thread(s)")
    log.info(f"{done} trials already finished; running up to {remaining} more on {where}, "
             f"{threads or 'train.threads'} torch thread(s) each")
    start = time.monotonic()
    root = str(Path.cwd())
    refunds = 0
    while remaining > 0 and not (t.timeout and time.monotonic() - start > t.timeout):
        wave = [study.ask() for _ in range(min(_concurrent(t), remaining))]
        futures = [trial_task.submit(case, tr._trial_id, tr.number, params_path, list(overrides or []), t.epochs,
                                     t.seed, root, t.storage) for tr in wave]
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
    from r2n2.tune import suggest  # torch

    fixed = optuna.trial.FixedTrial(best.params)
    out = overrides_from(get_case(case), suggest(fixed, get_case(case)))
    path = TUNING_DIR / f"{case}-best.yaml"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"# best of {len(complete)} complete trials: validation {best.value:.6g} (trial {best.number})\n"
                   + yaml.safe_dump(out, sort_keys=True))
    tmp.replace(path)
    log.info(f"best trial {best.number}: {best.value:.5g} -> {path}")
    return {"value": best.value, "trial": best.number, **out}
