"""How idle OpenMP threads wait: the `r2n2` command makes them sleep (OMP_WAIT_POLICY=PASSIVE) when other work keeps
a core busy as a computing command starts, before torch loads; it keeps a user's setting; the policy leaves a
2-thread training run's bytes as they are."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from flows import cli

ROOT = Path(__file__).resolve().parents[1]

PROBE = ("import sys; sys.argv = {argv!r}; import flows.cli, os; "
         "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")

TRAIN = """
import hashlib, torch
from r2n2 import EnhancedR2N2
torch.set_num_threads(2)
torch.manual_seed(0)
model = EnhancedR2N2(8, 128, 1)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = torch.randn(64, 60, 8), torch.randn(64, 1)
for _ in range(5):
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()
h = hashlib.sha256()
for p in model.parameters():
    h.update(p.detach().numpy().tobytes())
print(h.hexdigest())
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update(extra, PYTHONPATH=str(ROOT))
    return env


@pytest.mark.parametrize("argv, env, percent, expected", [
    (["r2n2", "train", "stocks"], {}, [80.0, 5.0], "PASSIVE"),           # a core busy: threads sleep when idle
    (["r2n2", "train", "stocks"], {}, [20.0, 10.0], None),               # quiet: libgomp's default (it is faster)
    (["r2n2", "seeds", "panel"], {}, [50.0, 0.0], "PASSIVE"),             # half a core is enough
    (["r2n2", "dvc-yaml"], {}, [100.0, 100.0], None),                   # no torch work: never sampled
    (["r2n2", "train", "stocks"], {"OMP_WAIT_POLICY": "ACTIVE"}, [100.0, 100.0], "ACTIVE"),  # the user's value wins
    (["r2n2", "train", "stocks"], {"GOMP_SPINCOUNT": "1000"}, [100.0, 100.0], None),  # a spin count alone is kept
    (["r2n2", "train", "stocks"], {"OMP_WAIT_POLICY": ""}, [100.0, 100.0], None),     # empty: libgomp's default
])
def test_the_wait_policy_follows_the_load_unless_the_user_set_one(monkeypatch, argv, env, percent, expected):
    for var in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    sampled = []
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval, percpu: sampled.append(interval) or percent)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    cli._openmp_wait_policy(argv)
    assert os.environ.get("OMP_WAIT_POLICY") == expected
    assert bool(sampled) == (argv[1] in cli._COMPUTE_COMMANDS and not env)


def test_beside_a_busy_core_the_command_sets_passive_before_torch_loads():
    busy = subprocess.Popen([sys.executable, "-c", "while True:\n    pass\n"])
    try:
        time.sleep(0.5)
        out = subprocess.run([sys.executable, "-c", PROBE.format(argv=["r2n2", "train", "stocks"])], env=_env(),
                             capture_output=True, text=True, cwd=ROOT, check=True)
    finally:
        busy.kill()
        busy.wait()
    assert out.stdout.strip() == "PASSIVE False"


def test_the_wait_policy_keeps_a_two_thread_run_bytes():
    shas = {policy: subprocess.run([sys.executable, "-c", TRAIN], env=_env(OMP_WAIT_POLICY=policy),
                                   capture_output=True, text=True, cwd=ROOT, check=True).stdout.strip()
            for policy in ("PASSIVE", "ACTIVE")}
    assert len(shas["PASSIVE"]) == 64 and shas["PASSIVE"] == shas["ACTIVE"], shas
