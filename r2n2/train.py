"""One trainer for every model: device choice, AMP on CUDA, AdamW, clipping, LR schedule, early stopping,
class weights, per-epoch metrics, and atomic per-epoch state so a killed run resumes to the same result.

Batches come from any object with ``iter_epoch(epoch)`` yielding ``(x, lengths | None, y)`` and ``len()``
(``StockBatches``, ``TextBatches``); shuffling is seeded by epoch, and the torch RNG state is saved with
each epoch, so a resumed run replays exactly the batches and dropout masks of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from .checkpoint import atomic_torch_save
from .config import TrainConfig
from .errors import ConfigError
from .models.core import RelationalRNN
from .models.distribution import distribution_loss

__all__ = ["train_model", "TrainResult", "resolve_device", "predict_batches", "seed_everything", "fingerprint",
           "distributed", "is_main_process", "training_threads", "usable_cores", "busy_cores",
           "warn_if_cores_busy"]


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # one row per epoch
    best_epoch: int = -1
    best_metric: float = float("nan")
    metric_name: str = ""
    resumed_from: int | None = None                    # epoch a killed run was resumed after
    seconds: float = 0.0
    epoch_seconds: list[float] = field(default_factory=list)  # training time of each epoch run here
    train_examples: int = 0                            # examples per epoch, all ranks together
    threads: int = 0                                   # torch CPU threads it trained with (the stages log it)
    threads_source: str = ""                           # where that count came from (train.threads, OMP_NUM_THREADS)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'.")
    return torch.device(name)


def distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun (WORLD_SIZE > 1):
    gloo on CPU, nccl on CUDA."""
    import os

    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def is_main_process() -> bool:
    return distributed()[0] == 0


def training_threads(threads: int) -> tuple[int, str]:
    """(torch CPU thread count to train with, where it comes from): ``train.threads``; 0 leaves torch's default;
    an OMP_NUM_THREADS in the environment wins (the tests set 1), said so because the bytes then differ."""
    import os

    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env), f"OMP_NUM_THREADS={env} in the environment, not train.threads={threads}"
    if threads == 0:
        return torch.get_num_threads(), "train.threads=0: torch's default for this machine"
    return threads, "train.threads"


def usable_cores() -> list[int]:
    """The CPU cores this process may run on (its affinity: a container or taskset may allow fewer than the host)."""
    import os

    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def busy_cores(interval: float = 0.1) -> float:
    """How many of the usable cores other work keeps busy, sampled over ``interval`` seconds while this thread
    sleeps (psutil)."""
    import psutil

    percent = psutil.cpu_percent(interval=interval, percpu=True)
    return sum(percent[i] for i in usable_cores() if i < len(percent)) / 100


def warn_if_cores_busy(threads: int, log: Callable[[str], None], *, busy: float | None = None) -> bool:
    """Log a line (and return True) when fewer than ``threads`` usable cores are free. With libgomp's default wait
    policy torch's idle threads spin, and beside a busy core a sentiment epoch took 3.0x its quiet time; with
    ``OMP_WAIT_POLICY=PASSIVE`` (which the `r2n2` command sets when it finds the cores busy as it starts) 1.07x
    (benchmarks/threads.py, docs/scale.md). The thread count is not changed here: it is part of the bytes."""
    import os

    cores = len(usable_cores())
    busy = busy_cores() if busy is None else busy
    if cores - busy >= threads - 0.5:
        return False
    if os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE":
        log(f"note: other work keeps {busy:.1f} of this machine's {cores} CPU cores busy; idle OpenMP threads "
            f"sleep (OMP_WAIT_POLICY=PASSIVE), so {threads} torch threads keep about their pace (measured: 1.07x "
            "the quiet epoch on 2 cores).")
        return True
    log(f"warning: other work keeps {busy:.1f} of this machine's {cores} CPU cores busy, and {threads} torch threads "
        "stall beside it while OpenMP's idle threads spin (measured: 3.0x the quiet epoch on 2 cores). Rerun with "
        "OMP_WAIT_POLICY=PASSIVE in the environment: the same bytes, 1.07x the quiet epoch (`r2n2` sets it itself "
        "when the cores are busy as a command starts and no policy is set).")
    return True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fingerprint(*parts) -> str:
    """Stable hash of configs / metadata: a resumed run must be the same run."""
    blob = json.dumps([asdict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts], sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _to(batch, device, non_blocking):
    x, lengths, y = batch
    return (x.to(device, non_blocking=non_blocking), None if lengths is None else lengths,
            y.to(device, non_blocking=non_blocking))


@torch.no_grad()
def predict_batches(model: RelationalRNN, batches, device: torch.device | str = "cpu", epoch: int = 0, *,
                    distribution: bool = False) -> np.ndarray:
    """Model outputs for every example of an unshuffled batch source, in its iteration order; with
    ``distribution`` the distribution head's (n, [E,] out, P) quantiles or Student-t parameters."""
    device = torch.device(device)
    model.eval().to(device)
    outs = []
    for x, lengths, _ in batches.iter_epoch(epoch):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(x.to(device), lengths, distribution=True) if distribution else model(x.to(device), lengths)
        outs.append(out.float().cpu())
    empty = (0, model.config.output_size) + ((model.config.head_params,) if distribution else ())
    return torch.cat(outs).numpy() if outs else np.zeros(empty)


def _metric_name(model: RelationalRNN) -> str:
    cfg = model.config
    if cfg.task == "classification":
        return "val_macro_f1"
    return {"none": "val_mse", "quantile": "val_pinball", "student_t": "val_nll"}[cfg.distribution]


def _val_metric(model, val, device, task) -> tuple[float, float]:
    """(validation loss, selection metric): regression MSE / MSE; classification CE / macro-F1; a distribution
    head its own loss (pinball / Student-t NLL) twice."""
    if model.config.distribution != "none":
        dist = torch.from_numpy(predict_batches(model, val, device, distribution=True))
        loss = distribution_loss(dist, torch.from_numpy(val.targets()).float(), model.config).item()
        return loss, loss

    out = predict_batches(model, val, device)
    y = val.targets()
    if task == "classification":
        from sklearn.metrics import f1_score  # 1.2 s to import: only the classifying stages pay it

        logits = torch.from_numpy(out)
        loss = nn.functional.cross_entropy(logits, torch.from_numpy(y).long()).item()
        return loss, float(f1_score(y, out.argmax(1), average="macro"))
    mse = float(np.mean((out.reshape(-1) - y.reshape(-1)) ** 2))
    return mse, mse


def train_model(model: RelationalRNN, train, val, cfg: TrainConfig, *, state_path: str | Path | None = None,
                run_id: str = "", epochs: int | None = None, lr: float | None = None,
                log: Callable[[str], None] | None = None, progress: bool = True,
                epoch_callback: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train ``model`` in place (ends holding the best validation weights) and return its history.

    ``state_path``: where per-epoch state is written atomically; if it exists with the same ``run_id`` the
    run resumes after its last finished epoch. It is removed once training completes.
    ``epoch_callback(epoch, val_metric)`` runs after each epoch (Optuna pruning raises from it).
    """
    log = log or (lambda msg: None)
    rank, world = distributed()
    if world > 1:
        log = log if rank == 0 else (lambda msg: None)
    threads, source = training_threads(cfg.threads)
    if threads > 1 and resolve_device(cfg.device).type == "cpu":
        warn_if_cores_busy(threads, log)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # float sums split by thread: the count is part of what makes the bytes
    try:
        result = _train(model, train, val, cfg, state_path=state_path, run_id=run_id, epochs=epochs, lr=lr, log=log,
                        progress=progress, epoch_callback=epoch_callback, rank=rank, world=world)
    finally:
        torch.set_num_threads(before)  # the caller's setting again (e.g. a tuning study's split of the cores)
    result.threads, result.threads_source = threads, source
    return result


@dataclass
class _Run:
    """What one training run carries from epoch to epoch (``_train`` and its parts)."""
    model: RelationalRNN
    cfg: TrainConfig
    device: torch.device
    params: list
    opt: torch.optim.Optimizer
    sched: Any
    ema: Any
    loss_fn: Any
    result: TrainResult
    best_state: dict = field(default_factory=dict)
    best: float = 0.0
    bad_epochs: int = 0

    @property
    def higher_better(self) -> bool:
        return self.model.config.task == "classification"

    @property
    def scored(self) -> nn.Module:
        """The weights that are validated and kept: the EMA's when there is one."""
        return self.ema.module if self.ema is not None else self.model


def _optimiser(model: RelationalRNN, cfg: TrainConfig, lr: float, epochs: int, device: torch.device):
    """(trainable parameters, AdamW, scheduler or None)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("nothing to train: every parameter of the model is frozen.")
    # fused: one kernel per parameter instead of ~10 element-wise passes (the sentiment model's 1.6 M-entry
    # embedding: 5.3 -> 1.4 ms a step on 2 CPU cores)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay, fused=device.type in ("cpu", "cuda"))
    if cfg.scheduler == "plateau":
        mode = "max" if model.config.task == "classification" else "min"
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=0.5,
                                                           patience=max(1, cfg.patience // 2))
    elif cfg.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    else:
        sched = None
    return params, opt, sched


def _loss(model: RelationalRNN, train, cfg: TrainConfig, device: torch.device):
    """Cross-entropy (class weights, label smoothing), the distribution head's loss, or MSE."""
    if model.config.task == "classification":
        y = train.targets()
        counts = np.bincount(y, minlength=model.config.output_size).astype(float)
        weights = counts.sum() / np.maximum(counts, 1) / len(counts) if cfg.class_weights else np.ones(len(counts))
        return nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32, device=device),
                                   label_smoothing=float(cfg.label_smoothing))
    if model.config.distribution != "none":  # pinball or Student-t NLL on the head's distribution
        return lambda out, y: distribution_loss(out, y, model.config)
    return nn.MSELoss()


def _resume(run: _Run, state_path: Path | None, run_id: str, epochs: int, log: Callable[[str], None]) -> int:
    """Load the run's saved state when it belongs to this run (same ``run_id``); returns the first epoch."""
    if not (state_path and state_path.is_file()):
        return 0
    state = torch.load(state_path, map_location=run.device, weights_only=True)
    if state.get("run_id") != run_id:
        log(f"ignoring {state_path}: it belongs to another configuration")
        return 0
    run.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["optimizer"])
    for group in run.opt.param_groups:  # a state saved by unfused AdamW (before 2026-12-06) resumes fused too
        group["fused"] = run.device.type in ("cpu", "cuda")
    if run.sched is not None and state.get("scheduler"):
        run.sched.load_state_dict(state["scheduler"])
    if run.ema is not None:
        run.ema.load_state_dict(state["ema"])
    torch.set_rng_state(state["torch_rng"].cpu())
    run.best_state, run.best, run.bad_epochs = state["best_state"], state["best"], state["bad_epochs"]
    run.result.best_epoch = state["best_epoch"]
    run.result.history = json.loads(state["history"])
    run.result.resumed_from = state["epoch"] + 1  # epochs counted from 1, as in the history
    log(f"resuming after epoch {state['epoch'] + 1} of {epochs} from {state_path}")  # counted from 1
    return state["epoch"] + 1


def _save_state(run: _Run, state_path: Path, run_id: str, epoch: int) -> None:
    atomic_torch_save({"run_id": run_id, "epoch": epoch, "model": run.model.state_dict(),
                       "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict() if run.sched else None,
                       "ema": run.ema.state_dict() if run.ema is not None else None,
                       "torch_rng": torch.get_rng_state(), "best_state": run.best_state, "best": run.best,
                       "bad_epochs": run.bad_epochs, "best_epoch": run.result.best_epoch,
                       "history": json.dumps(run.result.history)}, state_path)


def _epoch(run: _Run, net: nn.Module, train, epoch: int, epochs: int, *, progress: bool, rank: int,
           world: int) -> tuple[float, int]:
    """One pass over (at most ``max_batches_per_epoch`` of) the training batches: (summed loss, examples),
    over all ranks."""
    from tqdm.auto import tqdm

    model, cfg, device = run.model, run.cfg, run.device
    model.train()
    total, seen = 0.0, 0
    dist_out = model.config.distribution != "none"
    limit = cfg.max_batches_per_epoch or len(train)
    bar = tqdm(train.iter_epoch(epoch, rank=rank, world=world), total=min(limit, len(train)),
               desc=f"epoch {epoch + 1}/{epochs}", disable=(not progress or rank > 0) or None, leave=False)
    for i, batch in enumerate(bar):
        if i >= limit:
            break
        x, lengths, y = _to(batch, device, device.type == "cuda")
        run.opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = net(x, lengths, distribution=True) if dist_out else net(x, lengths)
        loss = run.loss_fn(out.float(), y.long() if run.higher_better else y)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(run.params, cfg.grad_clip)
        run.opt.step()
        if run.ema is not None:
            run.ema.update_parameters(model)
        total += loss.item() * len(y)
        seen += len(y)
        bar.set_postfix(loss=f"{total / seen:.4f}")
    if world > 1:  # the epoch's mean loss over all ranks' examples
        import torch.distributed as dist

        sums = torch.tensor([total, seen], dtype=torch.float64, device=device)
        dist.all_reduce(sums)
        total, seen = float(sums[0]), int(sums[1])
    return total, seen


def _validate(run: _Run, val, epoch: int, mean_loss: float, log: Callable[[str], None]) -> float:
    """Score the epoch on the validation batches, keep the best weights, step the scheduler, log the row."""
    val_loss, metric = _val_metric(run.scored, val, run.device, run.model.config.task)  # every rank: same answer
    if metric > run.best if run.higher_better else metric < run.best:
        run.best, run.bad_epochs = metric, 0
        run.best_state = {k: v.detach().clone() for k, v in run.scored.state_dict().items()}
        run.result.best_epoch = epoch
    else:
        run.bad_epochs += 1
    if isinstance(run.sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
        run.sched.step(metric)
    elif run.sched is not None:
        run.sched.step()
    row = {"epoch": epoch + 1, "train_loss": mean_loss, "val_loss": val_loss, run.result.metric_name: metric,
           "lr": run.opt.param_groups[0]["lr"]}
    run.result.history.append(row)
    log(" ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    return metric


def _train(model: RelationalRNN, train, val, cfg: TrainConfig, *, state_path, run_id, epochs, lr, log, progress,
           epoch_callback, rank: int, world: int) -> TrainResult:
    device = resolve_device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    epochs = cfg.epochs if epochs is None else epochs
    seed_everything(cfg.seed)
    model.to(device)
    params, opt, sched = _optimiser(model, cfg, cfg.lr if lr is None else lr, epochs, device)
    loss_fn = _loss(model, train, cfg, device)
    ema = None  # EMA of the weights: validated, kept and returned instead of the raw weights when ema_decay > 0
    if cfg.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(float(cfg.ema_decay)), use_buffers=True)
    run = _Run(model, cfg, device, params, opt, sched, ema, loss_fn, TrainResult(metric_name=_metric_name(model)))
    run.best_state = {k: v.detach().clone() for k, v in run.scored.state_dict().items()}
    run.best = -float("inf") if run.higher_better else float("inf")
    state_path = Path(state_path) if state_path else None
    start = _resume(run, state_path, run_id, epochs, log)
    t0 = time.perf_counter()
    net = model
    if world > 1:  # gradients are averaged across ranks; every rank holds the same weights
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    for epoch in range(start, epochs):
        if run.bad_epochs >= cfg.patience:
            break
        epoch_t0 = time.perf_counter()
        total, seen = _epoch(run, net, train, epoch, epochs, progress=progress, rank=rank, world=world)
        run.result.epoch_seconds.append(time.perf_counter() - epoch_t0)
        run.result.train_examples = seen
        metric = _validate(run, val, epoch, total / max(seen, 1), log)
        if epoch_callback is not None:
            epoch_callback(epoch, metric)
        if state_path and rank == 0:
            _save_state(run, state_path, run_id, epoch)
    model.load_state_dict(run.best_state)
    run.result.best_metric = float(run.best)
    run.result.seconds = time.perf_counter() - t0
    if state_path and rank == 0:
        state_path.unlink(missing_ok=True)
    return run.result
