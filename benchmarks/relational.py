"""Slide formulation vs r2n2, side by side in one run: time and peak memory per training step / inference.

Each measurement runs in its own subprocess so its peak resident memory (above the interpreter + model +
data baseline) is its own. Ratios are computed from the same run, so machine noise hits both sides.

    python benchmarks/relational.py            # full table (takes a few minutes on 2 cores)
    python benchmarks/relational.py --quick    # small shapes, seconds
    python benchmarks/relational.py --parts    # where the relational step's extra time goes (one process, ~20 s)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def worker(impl: str, mode: str, B: int, T: int, H: int, reps: int) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    import r2n2
    from tests import slide_reference as ref

    torch.manual_seed(0)
    if mode in ("train", "infer"):  # the whole EnhancedR2N2 (relational on the last step only)
        model = {"slide": lambda: ref.EnhancedR2N2(5, H, 1), "r2n2": lambda: r2n2.EnhancedR2N2(5, H, 1),
                 "nn.RNN": lambda: r2n2.R2N2(5, H, 1)}[impl]()
        x, y = torch.randn(B, T, 5), torch.randn(B, 1)
    else:  # all-pairs relational module alone
        model = {"slide": lambda: ref.RelationalModule(H), "r2n2": lambda: r2n2.RelationalModule(H)}[impl]()
        x = torch.randn(B, T, H)
        y = torch.randn(B, T, H)
    opt = torch.optim.Adam(model.parameters())
    training = mode.startswith("train") or mode == "pairs_train"

    def step():
        if training:
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            return loss.detach()
        with torch.no_grad():
            return model(x)

    base = _rss_mb()
    times = []
    for _ in range(reps + 1):  # first call warms up
        t0 = time.perf_counter()
        out = step()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"time_s": statistics.median(times[1:]), "peak_mb": max(peak - base, 0.1),
            "out": out.flatten()[:4].tolist() if not training else None}


def parts(B: int, T: int, H: int, reps: int = 40) -> None:
    """The pieces of the relational step at (B, T, H), timed interleaved in this process (medians): the plain RNN's
    forward and backward, the relation of the last step on fixed states (forward and backward), its key projection
    alone, one (B·T, H) x (H, H) GEMM, and fc2's max over the keys with and without the winners' indices. The
    pieces have no head, loss or optimizer step (the whole-step rows of the main table do), and every gradient is
    dropped after each call, as a training step's ``zero_grad(set_to_none=True)`` does."""
    import torch

    sys.path.insert(0, str(ROOT))
    from r2n2.models.relational import RelationalModule

    torch.manual_seed(0)
    rnn, rel = torch.nn.RNN(5, H, batch_first=True), RelationalModule(H)
    x, last = torch.randn(B, T, 5), torch.full((B,), T - 1)
    with torch.no_grad():
        h = rnn(x)[0].requires_grad_(True)  # (B, T, H), the RNN's own (strided) layout
    w_b = rel.fc1.weight[:, H:]
    flat, w = h.detach().reshape(B * T, H), w_b.detach().contiguous()
    pairs = torch.randn(B, T, H)

    def rnn_step():
        rnn(x)[0][:, -1].sum().backward()

    pieces = {
        "plain RNN, forward + backward": rnn_step,
        "RNN + relation of the last step": lambda: rel(rnn(x)[0], None, query=last).sum().backward(),
        "relation alone (fixed states)": lambda: rel(h, None, query=last).sum().backward(),
        "  its key projection (3 GEMMs)": lambda: torch.nn.functional.linear(h, w_b).sum().backward(),
        "  one (B*T, H) x (H, H) GEMM": lambda: flat @ w.t(),
        "  max over keys, with indices": lambda: pairs.max(dim=1),
        "  max over keys, values only": lambda: pairs.amax(dim=1),
    }
    times = {k: [] for k in pieces}
    for i in range(reps + 3):
        for k, f in pieces.items():
            t0 = time.perf_counter()
            f()
            if i >= 3:
                times[k].append(time.perf_counter() - t0)
            h.grad = None  # no gradient accumulates across calls (that would add a (B, T, H) sum to each)
            rnn.zero_grad(set_to_none=True)
            rel.zero_grad(set_to_none=True)
    print(f"B={B} T={T} H={H}, {torch.get_num_threads()} threads, medians of {reps} interleaved runs:")
    for k, ts in times.items():
        print(f"  {k:36s} {statistics.median(ts) * 1e3:7.2f} ms")


def _worker_run(impl: str, mode: str, B: int, T: int, H: int, reps: int, env: dict | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, mode, str(B), str(T), str(H), str(reps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["killed"])[-1][:60]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(impl: str, mode: str, B: int, T: int, H: int, reps: int) -> dict:
    """Time with the default allocator; peak memory from a second run in which glibc serves every block of
    64 KiB or more by mmap, so freed memory leaves the process at once and the peak RSS is the live peak
    (with the default allocator it also counts fragmentation). Both sides are measured the same way."""
    timed = _worker_run(impl, mode, B, T, H, reps)
    if "error" in timed:
        return timed
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    mem = _worker_run(impl, mode, B, T, H, 1, env)
    if "error" in mem:
        return mem
    timed["peak_mb"] = mem["peak_mb"]
    return timed


def fmt(r: dict) -> tuple[str, str]:
    if "error" in r:
        return "n/a", r["error"]
    return f"{r['time_s'] * 1000:9.1f} ms", f"{r['peak_mb']:9.1f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small shapes for a smoke run")
    ap.add_argument("--parts", action="store_true", help="time the pieces of the relational step (64 x 120 x 128)")
    ap.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.parts:
        parts(64, 120, 128)
        return
    if args.worker:
        impl, mode, B, T, H, reps = args.worker
        print(json.dumps(worker(impl, mode, int(B), int(T), int(H), int(reps))))
        return

    shapes = [(8, 30, 32), (4, 60, 32)] if args.quick else [(64, 120, 128), (32, 250, 128)]
    big_infer = (32, 250, 32) if args.quick else (256, 250, 128)
    rows = []
    header = f"{'case':44s} {'slide':>12s} {'r2n2':>12s} {'speed-up':>9s} | {'slide peak':>12s} {'r2n2 peak':>12s} {'mem ratio':>9s}"
    print(header)
    print("-" * len(header))

    def compare(label, mode, B, T, H, slide_reps, ours_reps, *, other="slide"):
        a = run(other, mode, B, T, H, slide_reps)
        b = run("r2n2", mode, B, T, H, ours_reps)
        ta, ma = fmt(a)
        tb, mb = fmt(b)
        sp = f"{a['time_s'] / b['time_s']:8.2f}x" if "error" not in a and "error" not in b else "n/a"
        mr = f"{a['peak_mb'] / b['peak_mb']:8.1f}x" if "error" not in a and "error" not in b else "n/a"
        line = f"{label:44s} {ta:>12s} {tb:>12s} {sp:>9s} | {ma:>12s} {mb:>12s} {mr:>9s}"
        print(line, flush=True)
        if other == "nn.RNN" and "error" not in a and "error" not in b:
            print(f"{'':44s} r2n2 / plain RNN train step = {b['time_s'] / a['time_s']:.2f} (goal <= 1.5, issue 40)", flush=True)
        rows.append((label, a, b))
        if a.get("out") and b.get("out"):
            diff = max(abs(u - v) for u, v in zip(a["out"], b["out"]))
            print(f"{'':44s} max |output difference| = {diff:.2e}", flush=True)
        return a, b

    for B, T, H in shapes:
        compare(f"EnhancedR2N2 train step B={B} T={T} H={H}", "train", B, T, H, 3, 10)
        compare(f"EnhancedR2N2 inference  B={B} T={T} H={H}", "infer", B, T, H, 3, 10)
        compare(f"  vs nn.RNN (R2N2) train B={B} T={T} H={H}", "train", B, T, H, 10, 10, other="nn.RNN")
        compare(f"RelationalModule all-pairs train B={B} T={T}", "pairs_train", B, T, H, 3, 3)
    B, T, H = big_infer
    need_gb = B * T * T * (2 * H + 2 * H) * 4 / 2**30
    ours = run("r2n2", "pairs_infer", B, T, H, 2)
    t, m = fmt(ours)
    print(f"{f'RelationalModule all-pairs infer B={B} T={T}':44s} {'not run':>12s} {t:>12s} {'':9s} | "
          f"{f'~{need_gb:.0f} GB':>12s} {m:>12s}")
    print("\nThe first column of ratios is slide time / r2n2 time (or nn.RNN time / r2n2 time on the 'vs' rows, "
          "so a value of 0.60x means r2n2 takes 1/0.60 = 1.7x the plain RNN, printed below the row); the second is peak memory above the "
          "process baseline, slide / r2n2. The slide's big inference needs the (B, T, T, 2H) concatenation "
          "plus fc1/fc2 outputs and is not run.")


if __name__ == "__main__":
    main()
