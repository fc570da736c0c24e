"""What a cheaper sentiment training step would save: the built-in model's step beside two candidate rewrites,
measured interleaved in one process (A B C A B C ...), so machine noise hits every column alike.

The candidates compute the same function with other float sums and other random draws, so adopting one changes
every trained sentiment model's bytes (and needs the 5-seed report rerun); this script says whether that is
worth it (issue 40, `make run` <= 6 minutes):

- ``padded GRU``: the bidirectional GRU on the padded batch, two one-direction passes with each text reversed
  within its length for the backward direction, instead of a packed sequence. Torch's packed GRU slices its
  precomputed input gates step by step, and each slice's backward writes a zero tensor of the whole batch's size.
- ``uniform dropout``: the model's dropout (on the embeddings and before the head) with its mask from
  ``uniform_() >= p`` instead of ``bernoulli_``.

Reads the batches of ``data/windows/sentiment`` (``dvc repro window-sentiment`` or ``make run``), the sampler's
own length-bucketed order, and builds the model from params.yaml.

    python benchmarks/sentiment_step.py              # 60 interleaved steps per variant (~1 min on 2 cores)
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def padded_encode(self, x, mask=None):
    """``RelationalRNN.encode`` for a one-layer bidirectional GRU over right-padded token ids, without packing:
    (B, T) ids -> (B, T, 2H) states, zero at padded steps (equal to the packed path up to float rounding)."""
    import torch

    if mask is None:
        raise ValueError("padded_encode needs the batch's (B, T) mask.")
    x = self.dropout(self.embedding(x))  # (B, T) -> (B, T, E)
    gru, (B, T) = self.encoder, mask.shape
    H = gru.hidden_size
    steps = torch.arange(T, device=x.device).unsqueeze(0)  # (1, T)
    lengths = mask.sum(1, keepdim=True)  # (B, 1)
    rev = torch.where(steps < lengths, lengths - 1 - steps, steps).unsqueeze(-1)  # (B, T, 1): reversal within length
    w, h0 = gru._flat_weights, x.new_zeros(1, B, H)
    fwd = torch._VF.gru(x, h0, w[:4], True, 1, 0.0, self.training, False, True)[0]  # (B, T, H)
    bwd = torch._VF.gru(x.gather(1, rev.expand(-1, -1, x.size(-1))), h0, w[4:], True, 1, 0.0, self.training,
                        False, True)[0]
    return torch.cat([fwd, bwd.gather(1, rev.expand(-1, -1, H))], -1) * mask.unsqueeze(-1)  # (B, T, 2H)


def uniform_dropout(p: float):
    import torch

    class UniformDropout(torch.nn.Module):
        def forward(self, z):
            if not self.training or p == 0:
                return z
            return z * (torch.empty_like(z).uniform_() >= p) * (1.0 / (1.0 - p))

    return UniformDropout()


VARIANTS = {"built-in": (), "padded GRU": ("padded",), "uniform dropout": ("dropout",),
            "both": ("padded", "dropout")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60, help="timed steps per variant (after 5 warm-up steps)")
    args = ap.parse_args()

    import torch

    from r2n2.models import build_model
    from r2n2.registry import get_case, load_params
    from r2n2.train import _loss  # the trainer's own loss (class weights, label smoothing)

    cfg = load_params(ROOT / "params.yaml").cases["sentiment"]
    data = get_case("sentiment").load(cfg, ROOT / "data" / "windows" / "sentiment")
    mcfg = data.model_config(cfg.model)
    if mcfg.cell != "gru" or not mcfg.bidirectional or mcfg.num_layers != 1:  # (each direction: w_ih, w_hh, b_ih, b_hh)
        raise SystemExit("the padded GRU variant is written for params.yaml's one-layer bidirectional GRU.")
    sampler = data.batches("pretrain", "train", batch_size=cfg.train.batch_size, shuffle=True)
    batches = list(itertools.islice(sampler.iter_epoch(0), args.steps + 5))
    loss_fn = _loss(build_model(mcfg), sampler, cfg.train, torch.device("cpu"))
    steps = {}
    for name, parts in VARIANTS.items():
        torch.manual_seed(0)
        model = build_model(mcfg).train()
        if "dropout" in parts:
            model.dropout = uniform_dropout(mcfg.dropout)
        if "padded" in parts:
            model.encode = types.MethodType(padded_encode, model)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay, fused=True)

        def step(batch, model=model, opt=opt):  # the trainer's step: weighted loss, clipped gradients, AdamW
            x, lengths, y = batch  # (B, T) ids, (B,) lengths, (B,) labels
            mask = torch.arange(x.size(1)).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x, mask=mask), y).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            opt.step()

        steps[name] = step
    # the padded GRU computes the packed one's function: same weights, eval mode (no dropout), one batch
    torch.manual_seed(0)
    ref = build_model(mcfg).eval()
    alt = build_model(mcfg).eval()
    alt.load_state_dict(ref.state_dict())
    alt.encode = types.MethodType(padded_encode, alt)
    x, lengths, _ = max(batches, key=lambda b: int(b[1].max() - b[1].min()))  # the most ragged batch
    mask = torch.arange(x.size(1)).unsqueeze(0) < lengths.unsqueeze(1)
    with torch.no_grad():
        diff = (ref(x, mask=mask) - alt(x, mask=mask)).abs().max().item()
    times = {name: [] for name in steps}
    for i, batch in enumerate(batches):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step(batch)
            if i >= 5:
                times[name].append(time.perf_counter() - t0)
    base = times["built-in"]
    print(f"{'variant':18s} {'median step':>12s} {'median of pair ratios':>22s} {'ratio of medians':>17s}")
    for name, ts in times.items():
        ratio = statistics.median(a / b for a, b in zip(ts, base))
        print(f"{name:18s} {statistics.median(ts) * 1e3:9.1f} ms {ratio:22.3f} "
              f"{statistics.median(ts) / statistics.median(base):17.3f}")
    print(f"\npadded GRU vs packed, same weights, eval mode, the most ragged batch: "
          f"max |logit difference| {diff:.1e}")
    print(f"{len(base)} steps each, batch {cfg.train.batch_size}, {torch.get_num_threads()} torch threads.")


if __name__ == "__main__":
    main()
