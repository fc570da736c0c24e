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
from typing import Callable

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
    from sklearn.metrics import f1_score

    if model.config.distribution != "none":
        dist = torch.from_numpy(predict_batches(model, val, device, distribution=True))
        loss = distribution_loss(dist, torch.from_numpy(val.targets()).float(), model.config).item()
        return loss, loss

    out = predict_batches(model, val, device)
    y = val.targets()
    if task == "classification":
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


def _train(model: RelationalRNN, train, val, cfg: TrainConfig, *, state_path, run_id, epochs, lr, log, progress,
           epoch_callback, rank: int, world: int) -> TrainResult:
    from tqdm.auto import tqdm

    device = resolve_device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    task = model.config.task
    epochs = cfg.epochs if epochs is None else epochs
    lr = cfg.lr if lr is None else lr
    seed_everything(cfg.seed)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("nothing to train: every parameter of the model is frozen.")
    # fused: one kernel per parameter instead of ~10 element-wise passes (the sentiment model's 1.6 M-entry
    # embedding: 5.3 -> 1.4 ms a step on 2 CPU cores)
    fused = device.type in ("cpu", "cuda")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay, fused=fused)
    if cfg.scheduler == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max" if task == "classification" else "min",
                                                           factor=0.5, patience=max(1, cfg.patience // 2))
    elif cfg.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    else:
        sched = None
    if task == "classification":
        y = train.targets()
        counts = np.bincount(y, minlength=model.config.output_size).astype(float)
        weights = counts.sum() / np.maximum(counts, 1) / len(counts) if cfg.class_weights else np.ones(len(counts))
        loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32, device=device),
                                      label_smoothing=float(cfg.label_smoothing))
    elif model.config.distribution != "none":  # pinball or Student-t NLL on the head's distribution
        loss_fn = lambda out, y: distribution_loss(out, y, model.config)
    else:
        loss_fn = nn.MSELoss()
    dist_out = model.config.distribution != "none"
    higher_better = task == "classification"

    # EMA of the weights: validated, kept and returned instead of the raw weights when ema_decay > 0
    ema = None
    if cfg.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(float(cfg.ema_decay)), use_buffers=True)
    scored = ema.module if ema is not None else model  # the weights that are validated and kept

    result = TrainResult(metric_name=_metric_name(model))
    best_state = {k: v.detach().clone() for k, v in scored.state_dict().items()}
    best, bad_epochs, start = (-float("inf") if higher_better else float("inf")), 0, 0
    state_path = Path(state_path) if state_path else None
    if state_path and state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=True)
        if state.get("run_id") == run_id:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            for group in opt.param_groups:  # a state saved by unfused AdamW (before 2026-12-06) resumes fused too
                group["fused"] = fused
            if sched is not None and state.get("scheduler"):
                sched.load_state_dict(state["scheduler"])
            if ema is not None:
                ema.load_state_dict(state["ema"])
            torch.set_rng_state(state["torch_rng"].cpu())
            best_state, best, bad_epochs = state["best_state"], state["best"], state["bad_epochs"]
            result.best_epoch = state["best_epoch"]
            result.history = json.loads(state["history"])
            start = state["epoch"] + 1
            result.resumed_from = state["epoch"] + 1  # epochs counted from 1, as in the history
            log(f"resuming after epoch {state['epoch'] + 1} of {epochs} from {state_path}")  # counted from 1
        else:
            log(f"ignoring {state_path}: it belongs to another configuration")

    t0 = time.perf_counter()
    pin = device.type == "cuda"
    net = model
    if world > 1:  # gradients are averaged across ranks; every rank holds the same weights
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    for epoch in range(start, epochs):
        if bad_epochs >= cfg.patience:
            break
        model.train()
        total, seen = 0.0, 0
        epoch_t0 = time.perf_counter()
        limit = cfg.max_batches_per_epoch or len(train)
        bar = tqdm(train.iter_epoch(epoch, rank=rank, world=world), total=min(limit, len(train)),
                   desc=f"epoch {epoch + 1}/{epochs}", disable=(not progress or rank > 0) or None, leave=False)
        for i, batch in enumerate(bar):
            if i >= limit:
                break
            x, lengths, y = _to(batch, device, pin)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = net(x, lengths, distribution=True) if dist_out else net(x, lengths)
            loss = loss_fn(out.float(), y.long() if higher_better else y)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            total += loss.item() * len(y)
            seen += len(y)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        if world > 1:  # the epoch's mean loss over all ranks' examples
            import torch.distributed as dist

            sums = torch.tensor([total, seen], dtype=torch.float64, device=device)
            dist.all_reduce(sums)
            total, seen = float(sums[0]), int(sums[1])
        result.epoch_seconds.append(time.perf_counter() - epoch_t0)
        result.train_examples = seen
        val_loss, metric = _val_metric(scored, val, device, task)  # every rank: same weights, same answer
        improved = metric > best if higher_better else metric < best
        if improved:
            best, bad_epochs = metric, 0
            best_state = {k: v.detach().clone() for k, v in scored.state_dict().items()}
            result.best_epoch = epoch
        else:
            bad_epochs += 1
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(metric)
        elif sched is not None:
            sched.step()
        row = {"epoch": epoch + 1, "train_loss": total / max(seen, 1), "val_loss": val_loss,
               result.metric_name: metric, "lr": opt.param_groups[0]["lr"]}
        result.history.append(row)
        log(" ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        if epoch_callback is not None:
            epoch_callback(epoch, metric)
        if state_path and rank == 0:
            atomic_torch_save({"run_id": run_id, "epoch": epoch, "model": model.state_dict(),
                               "optimizer": opt.state_dict(), "scheduler": sched.state_dict() if sched else None,
                               "ema": ema.state_dict() if ema is not None else None,
                               "torch_rng": torch.get_rng_state(), "best_state": best_state, "best": best,
                               "bad_epochs": bad_epochs, "best_epoch": result.best_epoch,
                               "history": json.dumps(result.history)}, state_path)
    model.load_state_dict(best_state)
    result.best_metric = float(best)
    result.seconds = time.perf_counter() - t0
    if state_path and rank == 0:
        state_path.unlink(missing_ok=True)
    return result
