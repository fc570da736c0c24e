"""README's shell blocks marked runnable, run as written on small data (issue #23, item 5).

A block is runnable when the line before its ```bash fence is `<!-- runnable -->` (an HTML comment: GitHub shows
nothing). Each one runs with `bash` under `set -euo pipefail`, as written, in README order, in a copy of the project
in git + DVC (a later block may use what an earlier one made, as for a reader following the README), in a terminal
whose PATH lacks the venv: every block after the activation block runs behind it, as the README says. The files
the blocks name are the project's own (`examples/`); the copy's `params.yaml` has smaller models and fewer epochs.

Unmarked, and why:
- `make run` / `make test`: the whole pipeline on the built-in data (10 min) / the whole suite, this test in it.
- Prefect UI and deployment: `make ui` and `r2n2 serve` run until stopped, `r2n2 deploy` needs a server and a
  worker (`prefect worker start`), `r2n2 pipeline all` is the built-in data again.
- DVC reproduction: `dvc repro` is every case (10 min), `r2n2 verify` compares with the committed full-size reports,
  `make lock` needs the network.
- the library block is Python (on placeholder tensors), not shell.

The replay's minimum period (2 x --retrain-every trading days) is checked where a user meets it: the README's
CLI table, `r2n2 replay --help` and the one-paragraph error of a period too short.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import ROOT, copy_code

MARK = "<!-- runnable -->"
VENV_BIN = ROOT / ".venv" / "bin"


def runnable_blocks(text: str) -> list[str]:
    """The bodies of the ```bash blocks whose fence follows a `<!-- runnable -->` line, in order."""
    return [m.group(1) for m in re.finditer(r"^<!-- runnable -->\n```bash\n(.*?)^```$", text, re.M | re.S)]


def test_marked_blocks_are_found_and_readme_keeps_its_shape():
    text = (ROOT / "README.md").read_text()
    blocks = runnable_blocks(text)
    assert len(blocks) == text.count(MARK) >= 3  # every marker sits right above a bash fence
    assert blocks[0].startswith(". .venv/bin/activate")  # the activation comes before any other runnable block
    lines = text.splitlines()
    assert len(lines) <= 250
    head = "\n".join(lines[:40])
    assert "make run" in head and "make test" in head


def test_replay_minimum_period_in_readme_and_help(capsys):
    from flows.cli import main

    assert "the period must hold ≥ 2 × N days" in (ROOT / "README.md").read_text()
    with pytest.raises(SystemExit) as exit_:
        main(["replay", "--help"])
    assert exit_.value.code == 0
    assert "must hold at least 2 x --retrain-every trading days" in " ".join(capsys.readouterr().out.split())


def _write_small_project(ws: Path) -> None:
    """A copy of the project as a reader has it (params.yaml, examples/, the code DVC hashes, dvc.yaml), in git and
    DVC, with smaller models and fewer epochs in params.yaml: the blocks themselves run unchanged."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name in ("stocks", "panel", "sentiment"):
        c = params[name]
        c["model"]["hidden_size"] = 8
        c["train"].update(epochs=2, max_batches_per_epoch=20)
        c["finetune"]["epochs"] = 1
    params["stocks"]["window"]["lookback"] = 10
    params["stocks"]["evaluate"]["bootstrap"] = 200
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(ROOT / "examples", ws / "examples")
    copy_code(ws)
    (ws / ".venv").symlink_to(ROOT / ".venv")
    (ws / ".gitignore").write_text(".venv\n__pycache__/\n")
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "r2n2"],
                ["git", "config", "user.email", "r2n2@localhost"], [str(VENV_BIN / "dvc"), "init", "-q"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "a small project"]):
        subprocess.run(cmd, cwd=ws, check=True, capture_output=True)


def _check_venv(ws: Path, out: str) -> None:
    found = out.split()[-3:]  # `command -v r2n2 dvc prefect`, appended by the test
    assert [Path(p).name for p in found] == ["r2n2", "dvc", "prefect"], out
    assert all(Path(p).parent.resolve() == VENV_BIN.resolve() for p in found), out


BUILT_IN = ("stocks", "sentiment", "panel", "volatility")


def _check_instances(ws: Path, out: str) -> None:
    assert "model" in json.loads((ws / "data/reports/nasdaq/metrics.json").read_text())
    validated = pd.read_parquet(ws / "data/validated/nasdaq.parquet")
    assert set(validated["entity"]) == {"nasdaq_fred"} and len(validated) == 2346  # "." days filled forward
    drops = pd.read_parquet(ws / "data/validated/sp500-drops.parquet")
    assert set(drops["entity"]) == {"sp500"} and len(drops) == 1006  # four drops, read whole
    assert json.loads((ws / "data/windows/panel-db/meta.json").read_text())["case"] == "panel-db"
    assert (ws / "data/validated/posts.parquet").is_file()
    forecast = pd.read_csv(ws / "nasdaq-forecast.csv")
    assert len(forecast) == 2346 - 10 and set(forecast["entity"]) == {"nasdaq_fred"}  # N rows -> N - lookback
    written = [p.relative_to(ws / "data").as_posix() for p in (ws / "data").rglob("*") if p.is_file()]
    own = re.compile(rf"(^|/)\.?({'|'.join(BUILT_IN)})(\.parquet|-baselines|-finetuned|-scratch)?(/|\.r2n2-|$)")
    of_built_in = [w for w in written if own.search(w)]
    assert of_built_in == [], of_built_in  # nothing of a built-in case


def _check_operations(ws: Path, out: str) -> None:
    assert (ws / "data/ops/nasdaq/champion/model.pt").is_file(), out
    assert (ws / "data/ops/nasdaq/champion/history.json").is_file(), out
    assert (ws / "data/ops/nasdaq/reports/nasdaq/monitor.json").is_file(), out
    assert re.search(r"^\S+ +promote +", out, re.M), out  # the history: its first version, promoted


CHECKS = {  # a text that only that block holds -> what it promises
    ". .venv/bin/activate": _check_venv,
    "dvc repro evaluate-nasdaq": _check_instances,
    "r2n2 retrain nasdaq --no-push": _check_operations,
}


@pytest.mark.slow
def test_readme_runnable_blocks_work_as_written(prefect_server, tmp_path, monkeypatch, capsys):
    if not (VENV_BIN / "activate").is_file():
        pytest.skip("the README's blocks run in the project's .venv, which `make` creates")
    from prefect.settings import PREFECT_API_URL

    blocks = runnable_blocks((ROOT / "README.md").read_text())
    matched = [[key for key in CHECKS if key in block] for block in blocks]
    assert all(len(m) == 1 for m in matched) and sorted(k for m in matched for k in m) == sorted(CHECKS), \
        "each runnable block needs exactly one entry in CHECKS"
    ws = tmp_path / "project"
    ws.mkdir()
    _write_small_project(ws)
    # a new terminal: the venv is not on PATH until the activation block; the pipeline's flow reports to the
    # session's Prefect server instead of starting one of its own
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(d for d in env["PATH"].split(os.pathsep)
                                  if d and Path(d).resolve() != VENV_BIN.resolve())
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    activate = blocks[0]
    for block, (key,) in zip(blocks, matched):
        script = "set -euo pipefail\n" + (block + "command -v r2n2 dvc prefect\n" if block is activate
                                          else activate + block)
        run = subprocess.run(["bash", "-c", script], cwd=ws, env=env, capture_output=True, text=True)
        assert run.returncode == 0, f"README block failed:\n{block}\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
        CHECKS[key](ws, run.stdout)

    # a replay shorter than 2 x --retrain-every trading days: one paragraph that states the rule
    from flows.cli import main

    monkeypatch.chdir(ws)
    start, end = "2015-06-01", "2015-07-10"
    days = len(pd.bdate_range(start, end))  # nasdaq_fred.csv holds every weekday ("." filled forward)
    capsys.readouterr()
    assert main(["replay", "nasdaq", "--start", start, "--end", end, "--retrain-every", "21"]) == 2
    err = capsys.readouterr().err
    assert (f"the replay period {start} .. {end} holds {days} trading days of nasdaq_fred; it needs at least "
            f"2 x --retrain-every = 42.") in err and "Traceback" not in err, err
