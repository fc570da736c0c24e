"""How much of each sentiment batch is padding, with the length-bucketed sampler and with plain random batches,
and what a training step costs with each (side by side in one run).

The sampler (``r2n2.data.window.TextBatches``): shuffle per (seed, epoch), sort by length inside chunks of 50
batches, cut into batches, shuffle the batches. Random batches: the same shuffle without the sort, each batch
padded to its longest text. Reads ``data/windows/sentiment`` (``dvc repro window-sentiment``).

    python benchmarks/padding.py                  # padding shares of one epoch, 60 timed steps each (~1 min)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def random_batches(ids: list, labels: np.ndarray, batch_size: int, seed: int, epoch: int):
    """The sampler's own shuffle of (seed, epoch), without the sort by length."""
    import torch

    order = np.random.default_rng([seed, epoch]).permutation(len(ids))
    for i in range(0, len(order), batch_size):
        b = order[i:i + batch_size]
        lengths = np.array([len(ids[j]) for j in b])
        out = np.zeros((len(b), lengths.max()), dtype=np.int64)
        for row, j in enumerate(b):
            out[row, :lengths[row]] = ids[j]
        yield torch.from_numpy(out), torch.from_numpy(lengths), torch.from_numpy(labels[b])


def padding_share(batches) -> tuple[float, float]:
    """(padding share of all token slots, mean padded length: the steps the recurrent layers run per text)"""
    real = slots = n = 0
    for ids, lengths, _ in batches:
        real, slots, n = real + int(lengths.sum()), slots + ids.numel(), n + len(lengths)
    return 1 - real / slots, slots / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60, help="timed training steps per sampler")
    args = ap.parse_args()
    import torch

    from r2n2.models import build_model
    from r2n2.registry import get_case, load_params

    case = get_case("sentiment")
    cfg = load_params(ROOT / "params.yaml").cases["sentiment"]
    data = case.load(cfg, ROOT / "data" / "windows" / "sentiment")
    bucketed = data.batches("pretrain", "train", batch_size=cfg.train.batch_size, shuffle=True, seed=0)
    ids, labels, bs = bucketed.ids, np.asarray(bucketed.labels), cfg.train.batch_size
    shares = {"length-bucketed (r2n2)": padding_share(bucketed.iter_epoch(0)),
              "random batches": padding_share(random_batches(ids, labels, bs, 0, 0))}

    from r2n2.train import training_threads

    threads = training_threads(cfg.train.threads)[0]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(data.model_config())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step_seconds(batches) -> float:
        times = []
        for k, (x, lengths, y) in enumerate(batches):
            if k == args.steps:
                break
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x, lengths), y).backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        return statistics.median(times[3:])

    # interleaved, twice, so noise hits both alike
    runs = {name: [] for name in shares}
    for rep in range(2):
        runs["length-bucketed (r2n2)"].append(step_seconds(bucketed.iter_epoch(rep)))
        runs["random batches"].append(step_seconds(random_batches(ids, labels, bs, 0, rep)))
    step = {name: min(v) for name, v in runs.items()}
    print(f"{len(ids)} training texts, batch {bs}, {threads} torch threads; step: the faster of two runs' medians of "
          f"{args.steps} steps")
    print(f"{'sampler':26s} {'padding':>8s} {'padded T':>9s} {'step':>9s}")
    for name, (share, mean_t) in shares.items():
        print(f"{name:26s} {share:8.1%} {mean_t:9.1f} {step[name] * 1000:7.1f}ms")
    base = step["random batches"]
    print(f"bucketed / random step time: {step['length-bucketed (r2n2)'] / base:.2f}")


if __name__ == "__main__":
    main()
