"""N-th farthest without the trivial plateau (issue #39 item 5): N is drawn from 1..K-1, so the answer is never
m itself, and a curriculum goes from K = 3 vectors to K = 4.

The task and the models are those of benchmarks/nth_farthest.py, with two changes:

- **No trivial case.** In the original task N runs over 1..K and N = K is m itself, which the input names, so every
  model first learns "answer m when N = K" and can sit on that plateau (2/K) for millions of sequences. Here N is
  drawn from 1..K-1: answering m is never right. A model that only learns "not m" scores 1/(K-1): 50 % at K = 3,
  33.3 % at K = 4. Uniform guessing scores 1/K.
- **Curriculum.** One model reads both sizes: the one-hots (id, N, m) are 4 long for K = 3 too, the head has 4
  logits. Training starts at K = 3 and moves to K = 4 when the K = 3 accuracy on a separate switch set (its own
  seed, never the reported held-out set) reaches 90 %, or when half the run's budget is spent, whichever is first.

Models: the Relational Memory Core at Sonnet's effective setting for this task (4 memories, **4 heads, 4 blocks**;
head size 16 so that a step fits one CPU thread) against an LSTM (width 256), each through the library
(``build_model(ModelConfig(...))``) with the same ReLU MLP head (2 x 256). Adam 1e-3, batch 128, one torch thread.

**Stopping rule, fixed before the runs:** the RMC separates from the LSTM if its final K = 4 held-out accuracy
exceeds the LSTM's by more than 3 points on **both** seeds; otherwise the verdict is "no separation".

    OMP_NUM_THREADS=1 python benchmarks/nth_farthest_curriculum.py --seeds 0 1 --minutes 10
    python benchmarks/nth_farthest_curriculum.py --plot-only   # table, verdict and PNG from the JSON

Rows go to docs/nth_farthest_curriculum.json (a rerun of a model and seed replaces its row); the learning curves
to docs/nth_farthest_curriculum.png.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_spec = importlib.util.spec_from_file_location("nth_farthest", ROOT / "benchmarks" / "nth_farthest.py")
nf = importlib.util.module_from_spec(_spec)
sys.modules["nth_farthest"] = nf  # its dataclasses look their module up there
_spec.loader.exec_module(nf)

from r2n2.io import write_with  # noqa: E402
from r2n2.models import ModelConfig, build_model  # noqa: E402

JSON_PATH = ROOT / "docs" / "nth_farthest_curriculum.json"
PNG_PATH = ROOT / "docs" / "nth_farthest_curriculum.png"
WIDTH, FEATURES, BATCH, LR = 4, 4, 128, 1e-3     # one-hot length = K at the end of the curriculum
CURRICULUM = (3, 4)
SWITCH_AT = 0.90                                 # K = 3 switch-set accuracy that moves training to K = 4
HELD_OUT_SEED, SWITCH_SEED, EVAL_SIZE = 10_000, 10_001, 2000
MARGIN = 0.03                                    # the stopping rule: RMC - LSTM > 3 points on both seeds
MODELS = ("rmc", "lstm")


def batch(rng: np.random.Generator, size: int, K: int):
    x, y, _, _ = nf.nth_farthest_batch(rng, size, K, FEATURES, nontrivial=True, width=WIDTH)
    return torch.from_numpy(x), torch.from_numpy(y)


def make_model(name: str) -> nn.Module:
    """Library model (its linear head is the MLP's first layer) + ReLU MLP 256 -> 256 -> 4 logits."""
    common = {"input_size": FEATURES + 3 * WIDTH, "output_size": 256, "task": "classification"}
    if name == "rmc":  # Sonnet's example passes num_mems = 4 as memories, heads and blocks alike
        body = build_model(ModelConfig(cell="rmc", relational=False, mem_slots=4, head_size=16, num_heads=4,
                                       num_blocks=4, **common))
    elif name == "lstm":
        body = build_model(ModelConfig(cell="lstm", relational=False, hidden_size=256, **common))
    else:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}.")
    return nn.Sequential(body, nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, WIDTH))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    pred = torch.cat([model(x[i:i + 1000]).argmax(-1) for i in range(0, len(x), 1000)])
    model.train()
    return float((pred == y).float().mean())


def train_one(name: str, seed: int, *, minutes: float, eval_every: int, log=print) -> dict:
    """One run: K = 3 until the switch set reaches SWITCH_AT or half of ``minutes`` is spent, then K = 4 until
    ``minutes`` of training time (evaluation is not charged)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    held = {K: batch(np.random.default_rng(HELD_OUT_SEED + 10 * K), EVAL_SIZE, K) for K in CURRICULUM}
    switch = batch(np.random.default_rng(SWITCH_SEED), EVAL_SIZE, CURRICULUM[0])
    model = make_model(name)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    curves: dict[str, list] = {str(K): [] for K in CURRICULUM}
    K, step, trained, switched_at = CURRICULUM[0], 0, 0.0, None

    def record():
        accs = {k: accuracy(model, *held[k]) for k in CURRICULUM}
        for k, a in accs.items():
            curves[str(k)].append([step, round(trained, 1), round(a, 4)])
        log(f"  {name} seed {seed} step {step:6d} {trained:5.0f}s K={K} "
            + " ".join(f"acc@K{k} {a:.3f}" for k, a in accs.items()))

    record()
    while trained < minutes * 60:
        tick = time.perf_counter()
        x, y = batch(rng, BATCH, K)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        step += 1
        trained += time.perf_counter() - tick
        if step % eval_every == 0:
            record()
            if K == CURRICULUM[0] and (accuracy(model, *switch) >= SWITCH_AT or trained >= minutes * 30):
                K, switched_at = CURRICULUM[1], {"step": step, "seconds": round(trained, 1)}
                log(f"  {name} seed {seed}: curriculum moves to K = {K} at step {step}")
    record()
    return {"model": name, "seed": seed, "steps": step, "seconds": round(trained, 1), "switched_at": switched_at,
            "final": {str(k): curves[str(k)][-1][2] for k in CURRICULUM}, "curves": curves,
            "parameters": sum(p.numel() for p in model.parameters()),
            "config": {"width": WIDTH, "features": FEATURES, "batch": BATCH, "lr": LR, "curriculum": CURRICULUM,
                       "switch_at": SWITCH_AT, "minutes": minutes, "threads": torch.get_num_threads()}}


def verdict(rows: list[dict]) -> tuple[str, list[dict]]:
    """The stopping rule on the final K = 4 held-out accuracies, per seed both models ran."""
    by = {(r["model"], r["seed"]): r for r in rows}
    seeds = sorted({s for m, s in by if m == "rmc"} & {s for m, s in by if m == "lstm"})
    gaps = [{"seed": s, "rmc": by["rmc", s]["final"]["4"], "lstm": by["lstm", s]["final"]["4"],
             "gap": round(by["rmc", s]["final"]["4"] - by["lstm", s]["final"]["4"], 4)} for s in seeds]
    separated = len(gaps) >= 2 and all(g["gap"] > MARGIN for g in gaps)
    return ("RMC > LSTM by more than 3 points on every seed: separation" if separated else
            "no separation (the RMC does not beat the LSTM by more than 3 points on every seed)"), gaps


def table(rows: list[dict]) -> str:
    out = ["| model | seed | parameters | steps | train s | moved to K = 4 at step | accuracy K = 3 | "
           "accuracy K = 4 |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (MODELS.index(r["model"]), r["seed"])):
        sw = r["switched_at"]["step"] if r["switched_at"] else "never"
        out.append(f"| {r['model']} | {r['seed']} | {r['parameters'] / 1e3:.0f} k | {r['steps']} | "
                   f"{r['seconds']:.0f} | {sw} | {100 * r['final']['3']:.1f} % | {100 * r['final']['4']:.1f} % |")
    out += ["| uniform guess | | | | | | 33.3 % | 25.0 % |", "| never m, else a guess | | | | | | 50.0 % | 33.3 % |"]
    return "\n".join(out)


def plot(rows: list[dict], path: Path = PNG_PATH) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    colors = {"rmc": "tab:red", "lstm": "tab:blue"}
    for ax, K in zip(axes, CURRICULUM):
        for r in rows:
            c = np.array(r["curves"][str(K)])
            ax.plot(c[:, 0], c[:, 2], color=colors[r["model"]], lw=1.6, ls="-" if r["seed"] == 0 else "--",
                    label=f"{r['model']} seed {r['seed']} (final {100 * r['final'][str(K)]:.0f} %)")
            if r["switched_at"]:
                ax.axvline(r["switched_at"]["step"], color=colors[r["model"]], lw=0.6, alpha=0.5)
        ax.axhline(1 / K, color="grey", ls=":", label=f"uniform guess ({100 / K:.0f} %)")
        ax.axhline(1 / (K - 1), color="grey", ls="--", label=f"never m, else a guess ({100 / (K - 1):.0f} %)")
        ax.set_ylim(0, 1)
        ax.set_xlabel("training step (thin vertical line: the run moved to K = 4)")
        ax.set_ylabel("held-out accuracy")
        ax.set_title(f"K = {K} vectors of {FEATURES} dims, N in 1..{K - 1} (never m)", fontsize=11)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("N-th farthest without the trivial case, curriculum K = 3 then 4: RMC (4 heads, 4 blocks) "
                 "against an LSTM", fontsize=12)
    return write_with(lambda tmp: fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None}), path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--minutes", type=float, default=10.0, help="training time per run (the issue's cap: 25)")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--plot-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = json.loads(JSON_PATH.read_text()) if JSON_PATH.exists() else []
    if not args.plot_only:
        for seed in args.seeds:
            for name in args.models:
                row = train_one(name, seed, minutes=args.minutes, eval_every=args.eval_every,
                                log=lambda line: print(line, flush=True))
                rows = [r for r in rows if (r["model"], r["seed"]) != (name, seed)] + [row]
                JSON_PATH.write_text(json.dumps(rows, indent=1) + "\n")
                plot(rows)
    print(table(rows))
    text, gaps = verdict(rows)
    for g in gaps:
        print(f"seed {g['seed']}: rmc {100 * g['rmc']:.1f} % - lstm {100 * g['lstm']:.1f} % = {100 * g['gap']:+.1f}")
    print("verdict:", text)
    print(plot(rows))


if __name__ == "__main__":
    main()
