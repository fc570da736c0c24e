"""N-th farthest (Santoro et al. 2018, "Relational recurrent neural networks", §5.1): a positive control for
the library's relational machinery (issue #22 item 2).

A sequence shows K random vectors (uniform in [-1, 1]^d), one per step, in random order. Every step's input is
[vector, one-hot id of the vector, one-hot N, one-hot m] (d + 3K features, as in the paper and Sonnet's
``dataset_nth_farthest``); the answer is the id of the vector that is the N-th farthest (Euclidean) from vector m,
a K-way classification. N runs over 1..K: N = 1 is the farthest, N = K is m itself (distance 0), which the input
already names, so accuracy on N != K is reported apart (``accuracy_nontrivial``).

Models go through the library: ``rmc`` (ModelConfig(cell="rmc"), the Relational Memory Core), ``lstm``
(ModelConfig(cell="lstm", relational=False)), ``gru`` (the same for a GRU), the slide presets ``GRUR2N2`` (GRU +
the slide's pairwise relational module on the last step) and ``EnhancedR2N2`` (plain RNN + relational module),
and ``lstm_relational`` (ModelConfig(cell="lstm", relational=True), no preset class); ``set_mlp`` is a control
outside the library, an MLP on the whole flattened sequence (it needs no memory). Each is followed by the same
ReLU MLP head (the paper's "final MLP"): the library model's linear head is the MLP's first layer.

Training data are generated on the fly from a generator seeded by the run's seed; accuracy is measured on one
fixed held-out set (its own seed, the same for every model and run) every ``--eval-every`` steps.

    OMP_NUM_THREADS=1 python benchmarks/nth_farthest.py --models rmc lstm GRUR2N2 --seeds 0 1 2 --minutes 6
    python benchmarks/nth_farthest.py --paper --device cuda --seeds 0 1 2 --minutes 30   # K=8, d=16 (GPU)
    python benchmarks/nth_farthest.py --plot-only          # redraw docs/nth_farthest.png from the JSON

Rows are merged into docs/nth_farthest.json (a rerun of the same setting, model and seed replaces its row) and
docs/nth_farthest.png is redrawn from all rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from r2n2.models import GRUR2N2, EnhancedR2N2, ModelConfig, build_model

JSON_PATH, PNG_PATH = ROOT / "docs" / "nth_farthest.json", ROOT / "docs" / "nth_farthest.png"
EVAL_SEED = 10_000  # the held-out set's generator: one set for every model and training seed


@dataclass(frozen=True)
class Setting:
    name: str                       # "reduced" | "paper"; the JSON rows' "setting"
    objects: int                    # K vectors per sequence = steps = classes
    features: int                   # d dims per vector
    batch: int                      # training sequences per step (paper: 1600)
    lr: float                       # Adam learning rate (paper and Sonnet: 1e-4, decayed to 8e-5)
    eval_size: int = 2000           # held-out sequences
    hidden: int = 256               # lstm / gru width (~0.4 M parameters with the head, like the rmc)
    slide_hidden: int = 128         # width of the slide presets and lstm_relational: their relational module's
    #                                 backward costs O(B·H²) per query, ~2x the rmc's step time at 128
    mem_slots: int = 4              # rmc memory rows (Sonnet's example: 4)
    head_size: int = 16             # rmc width per head (Sonnet's example: 2048, far too big for one CPU thread)
    num_heads: int = 2              # rmc heads (Sonnet's example passes num_mems = 4)
    num_blocks: int = 1             # rmc attention + MLP blocks per step (Sonnet's example passes num_mems = 4)
    mlp: tuple = (256, 256)         # final ReLU MLP widths (Sonnet's example: 4 x 256)


SETTINGS = {
    # Sonnet's reduced example size (4 vectors of 4 dims); smaller batch and a larger step size than the paper
    # so that a run of minutes on one CPU thread gets somewhere.
    "reduced": Setting("reduced", objects=4, features=4, batch=128, lr=1e-3),
    # The paper's task size (8 vectors of 16 dims) and batch; meant for a GPU.
    "paper": Setting("paper", objects=8, features=16, batch=1600, lr=1e-4, hidden=512, slide_hidden=512,
                     head_size=256, num_heads=4, num_blocks=4, mlp=(256, 256, 256, 256)),
}


# -- the task -------------------------------------------------------------------------------------------
def nth_farthest_batch(rng: np.random.Generator, batch: int, objects: int, features: int, *,
                       nontrivial: bool = False, width: int | None = None):
    """One batch of the task. Returns (inputs (B, K, d + 3W) float32, labels (B,) int64, n (B,) in 1..K,
    m (B,) in 0..K-1). Step t of a sequence shows the vector whose id is ``order[t]`` (a random permutation).
    ``nontrivial``: N is drawn from 1..K-1 only, so the answer is never m. ``width`` (W >= K, default K): the
    one-hots' length, so that one model reads sequences of K = 3 and K = 4 (a curriculum) with the same inputs."""
    B, K, d = batch, objects, features
    W = K if width is None else width
    vectors = rng.uniform(-1.0, 1.0, (B, K, d))  # indexed by id
    n = rng.integers(1, K if nontrivial else K + 1, B)  # N-th farthest, 1 = farthest, K = m itself
    m = rng.integers(0, K, B)  # reference id
    rows = np.arange(B)
    dist = np.linalg.norm(vectors[rows, m][:, None, :] - vectors, axis=-1)  # (B, 1, d) - (B, K, d) -> (B, K)
    by_distance = np.argsort(-dist, axis=1, kind="stable")  # (B, K): ids from farthest to nearest (m last)
    labels = by_distance[rows, n - 1]  # (B,)
    eye = np.eye(K, W)
    order = np.argsort(rng.random((B, K)), axis=1)  # (B, K): a random presentation order per sequence
    steps = np.concatenate([
        vectors[rows[:, None], order],  # (B, K, d): the vector shown at each step
        eye[order],  # (B, K, W): its id
        np.broadcast_to(eye[n - 1][:, None, :], (B, K, W)),  # (B, W) -> (B, K, W): N on every step
        np.broadcast_to(eye[m][:, None, :], (B, K, W)),  # m on every step
    ], axis=-1)  # -> (B, K, d + 3W)
    return steps.astype(np.float32), labels.astype(np.int64), n, m


def chance_levels(objects: int) -> dict:
    """Uniform guessing over K ids, and the best a model can do that only solved N = K (answer m there, guess
    among the other K - 1 ids elsewhere)."""
    K = objects
    return {"uniform": 1 / K, "uniform_nontrivial": 1 / K, "trivial_solved": 1 / K + (K - 1) / K / (K - 1),
            "trivial_solved_nontrivial": 1 / (K - 1)}


# -- the models -----------------------------------------------------------------------------------------
MODELS = ("rmc", "lstm", "gru", "GRUR2N2", "EnhancedR2N2", "lstm_relational", "set_mlp")


def make_model(name: str, s: Setting) -> nn.Module:
    """Library model (its linear head is the MLP's first layer) + the shared ReLU MLP head -> (B, K) logits."""
    F, width = s.features + 3 * s.objects, s.mlp[0]
    common = {"input_size": F, "output_size": width, "task": "classification"}
    if name == "rmc":
        body = build_model(ModelConfig(cell="rmc", relational=False, mem_slots=s.mem_slots, head_size=s.head_size,
                                       num_heads=s.num_heads, num_blocks=s.num_blocks, **common))
    elif name in ("lstm", "gru"):
        body = build_model(ModelConfig(cell=name, relational=False, hidden_size=s.hidden, **common))
    elif name == "lstm_relational":
        body = build_model(ModelConfig(cell="lstm", relational=True, hidden_size=s.slide_hidden, **common))
    elif name == "GRUR2N2":
        body = GRUR2N2(F, s.slide_hidden, width)
    elif name == "EnhancedR2N2":
        body = EnhancedR2N2(F, s.slide_hidden, width)
    elif name == "set_mlp":  # a control, not a library model: sees all K steps at once, so no memory is needed
        body = nn.Sequential(nn.Flatten(), nn.Linear(s.objects * F, width))  # (B, K, F) -> (B, K*F) -> (B, W)
    else:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}.")
    layers: list[nn.Module] = [body, nn.ReLU()]
    for a, b in zip(s.mlp, s.mlp[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(s.mlp[-1], s.objects))


# -- training -------------------------------------------------------------------------------------------
@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    out = torch.cat([model(x[i:i + 1000]).argmax(-1) for i in range(0, len(x), 1000)])
    model.train()
    return out


def train_one(name: str, s: Setting, seed: int, *, steps: int, minutes: float, eval_every: int,
              device: str = "cpu", log=None) -> dict:
    """Train one model for ``steps`` steps or ``minutes`` of wall time, whichever ends first."""
    log = log or (lambda line: print(line, flush=True))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ex, ey, en, em = nth_farthest_batch(np.random.default_rng(EVAL_SEED), s.eval_size, s.objects, s.features)
    ex, ey = torch.from_numpy(ex).to(device), torch.from_numpy(ey).to(device)
    nontrivial = torch.from_numpy(en != s.objects).to(device)
    model = make_model(name, s).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    loss_fn = nn.CrossEntropyLoss()
    curve, curve_nt, seconds_at = [], [], []
    t0, step, trained = time.perf_counter(), 0, 0.0

    def record():
        correct = predict(model, ex) == ey
        acc, acc_nt = correct.float().mean().item(), correct[nontrivial].float().mean().item()
        curve.append([step, round(acc, 4)])
        curve_nt.append([step, round(acc_nt, 4)])
        seconds_at.append(round(trained, 1))
        log(f"  {name:16s} seed {seed} step {step:6d} {trained:6.0f}s acc {acc:.3f} nontrivial {acc_nt:.3f}")

    record()
    while step < steps and trained < minutes * 60:
        tick = time.perf_counter()
        x, y, _, _ = nth_farthest_batch(rng, s.batch, s.objects, s.features)
        x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if device != "cpu":
            torch.cuda.synchronize()
        step += 1
        trained += time.perf_counter() - tick  # training time only; evaluation is not charged to the cap
        if step % eval_every == 0 or step == steps:
            record()
    if curve[-1][0] != step:
        record()
    pred = predict(model, ex).cpu().numpy()
    by_n = {str(n): round(float((pred == ey.cpu().numpy())[en == n].mean()), 4) for n in range(1, s.objects + 1)}
    answers_m = round(float((pred == em)[en != s.objects].mean()), 4)  # how often it says "m" where m is wrong
    return {"setting": s.name, "model": name, "seed": seed, "accuracy": curve[-1][1],
            "accuracy_nontrivial": curve_nt[-1][1], "steps": step, "seconds": round(trained, 1),
            "wall_seconds": round(time.perf_counter() - t0, 1), "curve": curve, "curve_nontrivial": curve_nt,
            "curve_seconds": seconds_at,
            "accuracy_by_n": by_n, "answers_m_when_wrong": answers_m, "parameters": sum(p.numel() for p in model.parameters()),
            "chance": chance_levels(s.objects), "config": {**asdict(s), "device": device, "threads":
                                                            torch.get_num_threads()}}


# -- reporting ------------------------------------------------------------------------------------------
def merge_rows(new: list[dict], path: Path = JSON_PATH) -> list[dict]:
    rows = json.loads(path.read_text()) if path.exists() else []
    keys = {(r["setting"], r["model"], r["seed"]) for r in new}
    rows = [r for r in rows if (r["setting"], r["model"], r["seed"]) not in keys] + new
    rows.sort(key=lambda r: (r["setting"], MODELS.index(r["model"]) if r["model"] in MODELS else 99, r["seed"]))
    path.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def summary(rows: list[dict]) -> str:
    """Markdown table: mean ± sd over seeds per setting and model, with chance levels."""
    out = ["| setting | model | seeds | steps (mean) | train s (mean) | accuracy | accuracy, N != K |",
           "|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["setting"], r["model"]), []).append(r)

    def ms(values):
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
        return f"{100 * np.mean(values):.1f} ± {100 * sd:.1f} %" if len(values) > 1 else f"{100 * values[0]:.1f} %"

    for (setting, model), g in groups.items():
        out.append(f"| {setting} | {model} | {len(g)} | {np.mean([r['steps'] for r in g]):.0f} | "
                   f"{np.mean([r['seconds'] for r in g]):.0f} | {ms([r['accuracy'] for r in g])} | "
                   f"{ms([r['accuracy_nontrivial'] for r in g])} |")
    for setting in sorted({r["setting"] for r in rows}):
        c = chance_levels(SETTINGS[setting].objects)
        out.append(f"| {setting} | chance (uniform) | | | | {100 * c['uniform']:.1f} % | "
                   f"{100 * c['uniform_nontrivial']:.1f} % |")
        out.append(f"| {setting} | only N = K solved | | | | {100 * c['trivial_solved']:.1f} % | "
                   f"{100 * c['trivial_solved_nontrivial']:.1f} % |")
    return "\n".join(out)


def by_n_summary(rows: list[dict]) -> str:
    """Markdown table: final accuracy per N (mean over seeds), and how often a model answers m where m is wrong."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["setting"], r["model"]), []).append(r)
    K = max(SETTINGS[s].objects for s, _ in groups)
    out = ["| setting | model | " + " | ".join(f"N = {n}" for n in range(1, K + 1)) + " | answers m where N ≠ K |",
           "|---|---|" + "---|" * (K + 1)]
    for (setting, model), g in groups.items():
        k = SETTINGS[setting].objects
        cells = [f"{100 * np.mean([r['accuracy_by_n'][str(n)] for r in g]):.1f} %" if n <= k else ""
                 for n in range(1, K + 1)]
        out.append(f"| {setting} | {model} | " + " | ".join(cells) +
                   f" | {100 * np.mean([r['answers_m_when_wrong'] for r in g]):.1f} % |")
    return "\n".join(out)


def plot(rows: list[dict], path: Path = PNG_PATH) -> Path:
    """Held-out accuracy against training step, per setting (rows) and metric (columns): thin line per seed,
    thick line the mean over seeds (on the steps all seeds reached), dotted chance levels."""
    from matplotlib.figure import Figure

    settings = sorted({r["setting"] for r in rows}, key=lambda s: list(SETTINGS).index(s))
    fig = Figure(figsize=(12, 4.6 * len(settings)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(settings), 2, squeeze=False))
    colors = {"rmc": "tab:red", "lstm": "tab:blue", "gru": "tab:cyan", "GRUR2N2": "tab:green",
              "EnhancedR2N2": "tab:olive", "lstm_relational": "tab:purple", "set_mlp": "black"}
    for i, setting in enumerate(settings):
        chance = chance_levels(SETTINGS[setting].objects)
        for j, (key, title, lines) in enumerate((
                ("curve", "all examples", (("uniform", "uniform guess"), ("trivial_solved", "only N = K solved"))),
                ("curve_nontrivial", "N ≠ K (the answer is not m)",
                 (("uniform_nontrivial", "uniform guess"), ("trivial_solved_nontrivial", "only N = K solved"))))):
            ax = axes[i, j]
            for model in [m for m in MODELS if any(r["model"] == m and r["setting"] == setting for r in rows)]:
                group = [r for r in rows if r["model"] == model and r["setting"] == setting]
                for r in group:
                    c = np.array(r[key])
                    ax.plot(c[:, 0], c[:, 1], color=colors[model], lw=0.8, alpha=0.45)
                common = sorted(set.intersection(*({s for s, _ in r[key]} for r in group)))
                mean = [np.mean([dict(map(tuple, r[key]))[s] for r in group]) for s in common]
                final = np.mean([r[key][-1][1] for r in group])
                ax.plot(common, mean, color=colors[model], lw=2.4,
                        label=f"{model} (n={len(group)}, final {100 * final:.0f} %)")
            for (level, text), style in zip(lines, (":", "--")):
                ax.axhline(chance[level], color="grey", ls=style, lw=1.2, label=f"{text} ({100 * chance[level]:.0f} %)")
            ax.set_ylim(0, 1)
            ax.set_xlabel("training step")
            ax.set_ylabel("held-out accuracy")
            K, d = SETTINGS[setting].objects, SETTINGS[setting].features
            ax.set_title(f"{setting}, K={K} vectors of {d} dims: {title}", fontsize=11)
            ax.grid(alpha=0.3)
            ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("N-th farthest (Santoro et al. 2018, §5.1): held-out accuracy; thick = mean over seeds, "
                 "thin = each seed", fontsize=12)
    from r2n2.io import write_with

    return write_with(lambda tmp: fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None}), path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paper", action="store_true", help="the paper's setting: 8 vectors of 16 dims, batch 1600")
    ap.add_argument("--models", nargs="+", default=["rmc", "lstm", "GRUR2N2"], choices=MODELS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=100_000, help="training steps per run (upper bound)")
    ap.add_argument("--minutes", type=float, default=8.0, help="training-time cap per run")
    ap.add_argument("--eval-every", type=int, default=250, help="steps between held-out evaluations")
    ap.add_argument("--batch", type=int, help="override the setting's batch size")
    ap.add_argument("--lr", type=float, help="override the setting's Adam learning rate")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the shared machine: 1)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    ap.add_argument("--plot-only", action="store_true", help="redraw the PNG and print the table from the JSON")
    args = ap.parse_args()
    if args.plot_only:
        rows = json.loads(JSON_PATH.read_text())
        print(summary(rows))
        print(by_n_summary(rows))
        print(plot(rows))
        return
    torch.set_num_threads(args.threads)
    s = SETTINGS["paper" if args.paper else "reduced"]
    s = replace(s, **{k: v for k, v in (("batch", args.batch), ("lr", args.lr)) if v is not None})
    print(f"setting {s}")
    new = []
    for seed in args.seeds:  # seed-major, so an interrupted sweep has every model at the first seeds
        for model in args.models:
            row = train_one(model, s, seed, steps=args.steps, minutes=args.minutes, eval_every=args.eval_every,
                            device=args.device)
            print(f"{model} seed {seed}: accuracy {row['accuracy']:.3f}, N != K {row['accuracy_nontrivial']:.3f}, "
                  f"{row['steps']} steps, {row['seconds']:.0f} s", flush=True)
            new.append(row)
            if not args.no_write:  # after every run, so an interrupted sweep keeps what it finished
                rows = merge_rows([row])
                plot(rows)
    print(summary(new if args.no_write else json.loads(JSON_PATH.read_text())))
    if not args.no_write:
        print(f"wrote {JSON_PATH.relative_to(ROOT)} and {PNG_PATH.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
