"""`r2n2 verify`: a run's headline numbers beside the committed report's, on small hand-made metrics files in a
temporary git repository; exact messages and exit codes (0 within tolerance, 1 moved, 2 missing / not in git)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from flows.cli import main

METRICS = Path("data/reports/stocks/metrics.json")
# the stocks case's headline metrics are rmse, rel_rmse_random_walk, oos_r2, directional_accuracy: two of them here
COMMITTED = {"model": {"rmse": 0.01, "rel_rmse_random_walk": 0.99, "n": 100},
             "baselines": {"random_walk": {"rmse": 0.0101, "rel_rmse_random_walk": 1.0, "n": 100}},
             "seeds": {"model": {"rmse": {"mean": 0.01, "sd": None, "n": 1}}}}
HEADER = ("  row                metric                 committed         now       diff tolerance  tolerance from     "
          "verdict")


def _git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True)


@pytest.fixture
def repo(project, monkeypatch):
    """The project folder as a git repository whose HEAD holds COMMITTED as the stocks report."""
    for var, value in (("GIT_AUTHOR_NAME", "t"), ("GIT_AUTHOR_EMAIL", "t@t"), ("GIT_COMMITTER_NAME", "t"),
                       ("GIT_COMMITTER_EMAIL", "t@t")):
        monkeypatch.setenv(var, value)
    _git("init", "-q")
    write(COMMITTED)
    _git("add", str(METRICS))
    _git("commit", "-q", "-m", "a run's report")
    return project


def write(metrics: dict) -> None:
    METRICS.parent.mkdir(parents=True, exist_ok=True)
    METRICS.write_text(json.dumps(metrics, indent=2))


def moved(section: str, row: str, key: str, value: float) -> dict:
    m = json.loads(json.dumps(COMMITTED))
    (m[section] if section == "model" else m[section][row])[key] = value
    return m


def test_an_unchanged_report_is_byte_identical_and_reproduced(repo, capsys):
    assert main(["verify", "stocks"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "stocks: data/reports/stocks/metrics.json vs HEAD: byte-identical"
    assert out[1] == HEADER
    assert out[2] == ("  model              rmse                        0.01        0.01  +0.00e+00  1.00e-08  "
                      "default rel 1e-06  reproduced within tolerance")
    assert len(out) == 2 + 4 + 1  # model and random walk on two metrics each
    assert out[-1] == "stocks: reproduced within tolerance (4 headline numbers)"


def test_float_rounding_passes_and_a_moved_number_is_named_with_its_size(repo, capsys):
    write(moved("model", "", "rmse", 0.01 * (1 + 1e-9)))  # rounding: other bytes, the same number
    assert main(["verify", "stocks"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "stocks: data/reports/stocks/metrics.json vs HEAD: differs; headline numbers:"
    assert out[-1] == "stocks: reproduced within tolerance (4 headline numbers)"

    write(moved("baselines", "random_walk", "rmse", 0.0111))
    assert main(["verify", "stocks"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert ("  random_walk        rmse                      0.0101      0.0111  +1.00e-03  1.01e-08  default rel 1e-06  "
            "MOVED") in out
    assert out[-1] == ("stocks: MOVED: 1 of 4 headline numbers: random_walk rmse by +0.001 (tolerance 1e-08, "
                       "default rel 1e-06)")


def test_rtol_widens_the_default_tolerance(repo, capsys):
    write(moved("model", "", "rel_rmse_random_walk", 0.9910))  # 0.1 % relative
    assert main(["verify", "stocks", "--rtol", "0.01"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "stocks: reproduced within tolerance (4 headline numbers)"
    assert main(["verify", "stocks"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == (
        "stocks: MOVED: 1 of 4 headline numbers: model rel_rmse_random_walk by +0.001 (tolerance 9.9e-07, "
        "default rel 1e-06)")


def test_a_seed_spread_in_the_committed_report_sets_the_tolerance(repo, capsys):
    spread = json.loads(json.dumps(COMMITTED))
    spread["seeds"]["model"]["rmse"] = {"mean": 0.0101, "sd": 0.0005, "n": 5}  # tolerance 3 x 0.0005
    write(spread)
    _git("commit", "-q", "-am", "five seeds")
    write({**spread, "model": {**spread["model"], "rmse": 0.0114}})  # +0.0014: within 0.0015
    assert main(["verify", "stocks"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == ("  model              rmse                        0.01      0.0114  +1.40e-03  1.50e-03  "
                      "3 sd of 5 seeds    reproduced within tolerance")
    write({**spread, "model": {**spread["model"], "rmse": 0.0116}})  # +0.0016: beyond it
    assert main(["verify", "stocks"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == (
        "stocks: MOVED: 1 of 4 headline numbers: model rmse by +0.0016 (tolerance 0.0015, 3 sd of 5 seeds)")


def test_a_number_missing_now_moved(repo, capsys):
    m = json.loads(json.dumps(COMMITTED))
    del m["baselines"]["random_walk"]["rel_rmse_random_walk"]
    write(m)
    assert main(["verify", "stocks"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert ("  random_walk        rel_rmse_random_walk           1     missing        n/a  1.00e-06  default rel 1e-06  "
            "MOVED") in out
    assert out[-1] == ("stocks: MOVED: 1 of 4 headline numbers: random_walk rel_rmse_random_walk missing (tolerance "
                       "1e-06, default rel 1e-06)")


def test_a_missing_run_is_exit_2_with_one_paragraph(repo, capsys):
    METRICS.unlink()
    assert main(["verify", "stocks"]) == 2
    err = capsys.readouterr().err
    assert err == ("r2n2 verify: data/reports/stocks/metrics.json does not exist in the working tree: run `make run` "
                   "(or `dvc repro evaluate-stocks`) first, then `r2n2 verify` compares its numbers with the committed "
                   "ones.\n")


def test_all_needs_every_case_s_report(repo, capsys):
    assert main(["verify", "all"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("r2n2 verify: data/reports/sentiment/metrics.json does not exist in the working tree")
    assert "Traceback" not in err and err.count("\n") == 1


def test_a_report_not_in_git_is_exit_2(repo, capsys):
    _git("rm", "-q", "--cached", str(METRICS))
    _git("commit", "-q", "-m", "untrack the report")
    assert main(["verify", "stocks"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("r2n2 verify: data/reports/stocks/metrics.json is not in git at HEAD, so there is nothing "
                          "to compare the run with: commit a run's reports first (`git add dvc.lock data/reports`), "
                          "or name a commit that has them with --rev (git said: fatal: ")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_outside_a_git_repository_is_exit_2(project, capsys, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(project.parent))  # no repository above the temp folder
    write(COMMITTED)
    assert main(["verify", "stocks"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"r2n2 verify: {os.getcwd()} is not inside a git repository, so there is no committed "
                          "data/reports/stocks/metrics.json to compare with; run `r2n2 verify` in the project's clone")


def test_a_file_that_is_not_a_report_is_exit_2(repo, capsys):
    METRICS.write_text("[1, 2]")
    assert main(["verify", "stocks"]) == 2
    assert capsys.readouterr().err == ("r2n2 verify: data/reports/stocks/metrics.json is not a metrics file written "
                                       "by `r2n2 evaluate` (no \"model\" mapping).\n")


# -- the thread count the numbers depend on (train.threads) ----------------------------------------------------------
def test_train_threads_come_from_params_unless_omp_num_threads_is_set(monkeypatch):
    import torch

    from r2n2.train import training_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert training_threads(2) == (2, "train.threads")
    assert training_threads(0) == (torch.get_num_threads(), "train.threads=0: torch's default for this machine")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert training_threads(2) == (1, "OMP_NUM_THREADS=1 in the environment, not train.threads=2")


def test_train_model_trains_with_train_threads_and_gives_the_caller_its_count_back(monkeypatch):
    import numpy as np
    import torch

    from r2n2.config import TrainConfig
    from r2n2.data.window import StockBatches, StockWindows
    from r2n2.models import ModelConfig, build_model
    from r2n2.train import train_model

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    rng = np.random.default_rng(0)
    windows = StockWindows(rng.normal(size=(60, 3)), rng.normal(size=60), np.arange(9, 60), 10)
    before = torch.get_num_threads()
    seen = []
    try:
        torch.set_num_threads(1)
        result = train_model(build_model(ModelConfig(input_size=3, hidden_size=4)), StockBatches(windows, 32),
                             StockBatches(windows, 64), TrainConfig(epochs=2, device="cpu", threads=2),
                             progress=False, epoch_callback=lambda epoch, metric: seen.append(torch.get_num_threads()))
        assert seen == [2, 2] and torch.get_num_threads() == 1
        assert (result.threads, result.threads_source) == (2, "train.threads")
    finally:
        torch.set_num_threads(before)


def test_busy_cores_warn_before_two_threads_train_and_quiet_ones_do_not(monkeypatch):
    """Beside a job that keeps one core of two busy, 2 torch threads get the warning with what to do (or, with idle
    threads sleeping, a note); 1 thread, or a quiet machine, do not. The count itself is never changed (it is part
    of the bytes)."""
    from r2n2 import train

    monkeypatch.setattr(train, "usable_cores", lambda: [0, 1])
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    said = []
    assert train.warn_if_cores_busy(2, said.append, busy=1.0)
    assert said == ["warning: other work keeps 1.0 of this machine's 2 CPU cores busy, and 2 torch threads stall "
                    "beside it while OpenMP's idle threads spin (measured: 3.0x the quiet epoch on 2 cores). Rerun "
                    "with OMP_WAIT_POLICY=PASSIVE in the environment: the same bytes, 1.07x the quiet epoch (`r2n2` "
                    "sets it itself when the cores are busy as a command starts and no policy is set)."]
    assert not train.warn_if_cores_busy(2, said.append, busy=0.1)
    assert not train.warn_if_cores_busy(1, said.append, busy=1.0)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert train.warn_if_cores_busy(2, said.append, busy=1.0)
    assert said[1] == ("note: other work keeps 1.0 of this machine's 2 CPU cores busy; idle OpenMP threads sleep "
                       "(OMP_WAIT_POLICY=PASSIVE), so 2 torch threads keep about their pace (measured: 1.07x the "
                       "quiet epoch on 2 cores).")
    said.pop()
    assert len(said) == 1
    # train_model asks before it trains with more than one thread on the CPU
    asked = []
    monkeypatch.setattr(train, "warn_if_cores_busy", lambda threads, log: asked.append(threads))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    test_train_model_trains_with_train_threads_and_gives_the_caller_its_count_back(monkeypatch)
    assert asked == [2]


def test_a_negative_thread_count_is_refused(project, capsys):
    assert main(["headline", "stocks", "--set", "stocks.train.threads=-1"]) == 2
    assert capsys.readouterr().err == ("r2n2 headline: stocks.train.threads must be >= 0 (0 = torch's default), "
                                       "got -1.\n")
