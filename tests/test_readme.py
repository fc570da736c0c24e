"""README's shell blocks marked runnable, run as written on small data (issue #23, item 5).

A block is runnable when the line before its ```bash fence is `<!-- runnable -->` (an HTML comment: GitHub shows
nothing). Each one runs with `bash` under `set -euo pipefail`, in README order, in a temporary git + DVC project
(a later block may use what an earlier one made, as for a reader following the README), in a terminal whose PATH
lacks the venv: every block after the activation block runs behind it, as the README says. Small data: the test
writes the files the blocks name (`brent.csv`, `drops/`, `prices.db`) and shrinks the stocks model and epochs in
the copy's `params.yaml`; the copy's `dvc.yaml` holds only `ingest-stocks`, the stage the `dvc exp run` block needs
to show that `params.yaml` took the change (the whole stocks chain is six stages more, ~35 s on 2 cores).

Unmarked, and why:
- `make run` / `make test`: the whole pipeline on the built-in data (10 min) / the whole suite, this test in it.
- the sentiment pipeline on `posts.parquet`: ~20 s more here; its column mapping (`body`, `sentiment`) runs end to
  end in tests/test_flows.py (`write_tiny_project`).
- Prefect UI and deployment: `make ui` and `r2n2 serve` run until stopped, `r2n2 deploy` needs a server and a
  worker (`prefect worker start`), `r2n2 pipeline all` is the built-in data again.
- DVC reproduction: `dvc repro` is every case (10 min), `r2n2 verify` compares with the committed full-size reports,
  `make lock` needs the network.
- the library block is Python (on placeholder tensors), not shell.

The replay's minimum period (2 x --retrain-every trading days) is checked where a user meets it: the README's
CLI table, `r2n2 replay --help` and the one-paragraph error of a period too short.
"""

import os
import re
import sqlite3
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import ROOT, copy_code, make_panel, make_prices

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
    """params.yaml with a small stocks model, the user files the blocks name, the code DVC hashes, git and DVC."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    s = params["stocks"]
    s["validate"]["min_rows"] = 100
    s["window"]["lookback"] = 10
    s["model"]["hidden_size"] = 8
    s["train"].update(epochs=2, batch_size=32)
    s["finetune"]["epochs"] = 1
    s["evaluate"].update(bootstrap=200, plots=False)
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    prices = make_prices(300, seed=3)  # FRED's layout: DATE, one series, "." on days without a price
    brent = pd.DataFrame({"DATE": prices["Date"], "DCOILBRENTEU": prices["Price"].round(2).astype(str)})
    brent.loc[[50, 120], "DCOILBRENTEU"] = "."
    brent.to_csv(ws / "brent.csv", index=False)
    drops = make_prices(120, seed=4, start="2016-03-01")[["Date", "Price"]].rename(columns={"Price": "close"})
    (ws / "drops").mkdir()
    drops.iloc[:60].to_csv(ws / "drops" / "2016-03.csv", index=False)
    drops.iloc[60:].to_csv(ws / "drops" / "2016-05.csv", index=False)
    with sqlite3.connect(ws / "prices.db") as con:
        make_panel(n_entities=4, n=150).to_sql("bars", con, index=False)
    copy_code(ws)
    dvc = yaml.safe_load((ws / "dvc.yaml").read_text())
    dvc["stages"] = {"ingest-stocks": dvc["stages"]["ingest-stocks"]}
    (ws / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
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


def _check_own_data(ws: Path, out: str) -> None:
    assert "model" in yaml.safe_load((ws / "data/reports/stocks/metrics.json").read_text())
    validated = pd.read_parquet(ws / "data/validated/stocks.parquet")
    assert set(validated["entity"]) == {"brent"} and len(validated) == 300  # the "." days filled forward
    raw = pd.read_parquet(ws / "data/raw/stocks.parquet")
    assert raw.groupby("entity").size().to_dict() == {"drops": 120}  # another source: read whole, not appended
    assert pd.read_parquet(ws / "data/raw/panel.parquet")["entity"].nunique() == 4


def _check_permanent(ws: Path, out: str) -> None:
    data = yaml.safe_load((ws / "params.yaml").read_text())["stocks"]["data"]
    assert data["source"] == "brent.csv" and data["columns"] == {"date": "DATE", "close": "DCOILBRENTEU"}
    assert data["na_values"] == ["."] and data["missing"] == "ffill"
    forecast = pd.read_csv(ws / "brent-forecast.csv")
    assert len(forecast) == 300 - 10 and set(forecast["entity"]) == {"brent"}  # N rows -> N - lookback


CHECKS = {  # a text that only that block holds -> what it promises
    ". .venv/bin/activate": _check_venv,
    "r2n2 pipeline stocks --set stocks.data.source=brent.csv": _check_own_data,
    "dvc exp run -S stocks.data.source=brent.csv": _check_permanent,
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
    days = len(pd.bdate_range(start, end))  # brent.csv holds every business day
    capsys.readouterr()
    small = ["--set", "stocks.window.val_days=40", "--set", "stocks.window.holdout_days=20"]  # cuts that fit 300 rows
    assert main(["replay", "stocks", "--start", start, "--end", end, "--retrain-every", "21", *small]) == 2
    err = capsys.readouterr().err
    assert (f"the replay period {start} .. {end} holds {days} trading days of brent; it needs at least "
            f"2 x --retrain-every = 42.") in err and "Traceback" not in err, err
