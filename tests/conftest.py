import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# One Prefect home per test session, never the user's; no server per test (see the prefect_server fixture).
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="r2n2-prefect-")
os.environ.pop("PREFECT_API_URL", None)
os.environ["R2N2_PLOT_STORE"] = tempfile.mkdtemp(prefix="r2n2-plots-")  # report pictures of the session's runs
# One torch thread per process (subprocesses inherit it): the suite's models are tiny, and two threads on a
# 2-core machine beside the session's Prefect server spin against it (check_case on the four cases: 27 s with one
# thread, 46 s with two, 2026-12-04). The server's background services the tests never use are off.
os.environ.setdefault("OMP_NUM_THREADS", "1")
for _service in ("CANCELLATION_CLEANUP", "DB_VACUUM", "FOREMAN", "LATE_RUNS", "PAUSE_EXPIRATIONS", "REPOSSESSOR",
                 "CLEANUP_RECONCILER", "TRIGGERS"):
    os.environ.setdefault(f"PREFECT_SERVER_SERVICES_{_service}_ENABLED", "false")

ROOT = Path(__file__).resolve().parents[1]


def make_prices(n=400, seed=0, start="2015-01-01") -> pd.DataFrame:
    """A geometric random walk with consistent OHLCV (high >= open, close >= low)."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = close * np.exp(rng.normal(0, 0.003, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    dates = pd.bdate_range(start, periods=n)
    return pd.DataFrame({"Date": dates.strftime("%Y-%m-%d"), "Open": open_, "High": high, "Low": low,
                         "Price": close, "Vol": rng.integers(1_000, 5_000, n)})


WORDS = {"negative": ["awful", "hate", "broken", "terrible", "worst"],
         "neutral": ["today", "meeting", "report", "schedule", "update"],
         "positive": ["love", "great", "awesome", "happy", "best"]}


def make_texts(n=600, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = ["negative", "neutral", "positive"][i % 3]
        words = rng.choice(WORDS[label], 3).tolist() + rng.choice(["the", "a", "car", "phone", "flight"], 3).tolist()
        brand = " my iphone" if i % 5 == 0 else ""
        rows.append({"body": f"tweet {i} " + " ".join(words) + brand, "sentiment": label[:3].upper()})
    return pd.DataFrame(rows)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A fresh project folder (params.yaml copied) as the working directory."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server for the whole session (startup can take over a minute)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


TINY_PARAMS = {
    "stocks": {"data": {"source": "prices.csv", "columns": {"close": "Price"}},
               "validate": {"min_rows": 100},
               "window": {"lookback": 10, "pretrain_entity": "alpha", "finetune_entity": "beta", "val_start": None,
                          "test_start": None},
               "model": {"hidden_size": 8}, "train": {"epochs": 2, "batch_size": 32},
               "finetune": {"epochs": 1}, "monitor": {"min_samples": 10}},
    "sentiment": {"data": {"source": "tweets.csv", "columns": {"text": "body", "label": "sentiment"}},
                  "validate": {"min_rows": 100},
                  "window": {"vocab_size": 200, "finetune_pattern": "iphone"},
                  "model": {"cell": "gru", "vocab_size": 200, "embed_size": 8, "hidden_size": 8,
                            "task": "classification", "output_size": 3},
                  "train": {"epochs": 2}, "finetune": {"epochs": 1}, "evaluate": {"bootstrap": 200}},
    "panel": {"data": {"source": "panel.csv"}, "validate": {"min_rows": 100},
              "window": {"lookback": 10, "val_start": None, "test_start": None},
              "model": {"hidden_size": 8}, "train": {"epochs": 2}, "evaluate": {"top_k": 2}},
}


def make_panel(n_entities=8, n=400, seed=0, start="2015-01-01") -> pd.DataFrame:
    """A long price panel (date, entity, close) of geometric random walks with a common market factor."""
    rng = np.random.default_rng(seed)
    market = rng.normal(0, 0.008, n)
    rows = []
    dates = pd.bdate_range(start, periods=n).strftime("%Y-%m-%d")
    for e in range(n_entities):
        close = 50 * np.exp(np.cumsum(market + rng.normal(0, 0.01, n)))
        rows.append(pd.DataFrame({"date": dates, "entity": f"S{e:02d}", "close": close}))
    return pd.concat(rows, ignore_index=True)


def write_tiny_project(folder: Path) -> None:
    """A project folder with small user data for both cases and fast params."""
    import yaml

    a, b = make_prices(400, seed=1), make_prices(400, seed=2)
    a.insert(0, "Entity", "alpha")
    b.insert(0, "Entity", "beta")
    pd.concat([a, b], ignore_index=True).to_csv(folder / "prices.csv", index=False)
    make_texts(900).to_csv(folder / "tweets.csv", index=False)
    make_panel().to_csv(folder / "panel.csv", index=False)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for case, sections in TINY_PARAMS.items():  # the full params.yaml (DVC needs every key) + tiny settings
        for section, values in sections.items():
            params[case][section].update(values)
    from r2n2.registry import REGISTRY

    for name, case in REGISTRY.items():  # any other case: its kind's synthetic example and tiny settings
        if name in TINY_PARAMS or name not in params:
            continue
        for key, value in case.example(folder).items():
            section, field = key.split(".")
            value = Path(value).name if key == "data.source" else value  # relative, like the others
            params[name][section][field] = value
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


def copy_code(folder: Path) -> None:
    """The source files dvc.yaml lists as dependencies, at the same relative paths."""
    shutil.copytree(ROOT / "r2n2", folder / "r2n2", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", folder / "dvc.yaml")
    (folder / ".dvcignore").write_text("__pycache__/\n")


def init_dvc_project(folder: Path) -> None:
    """``folder`` (a tiny project) as a git + DVC project the pipeline can drive: the code dvc.yaml hashes, dvc.yaml
    for its params, one commit; the venv's `r2n2` and `dvc` first on PATH for the stage commands DVC runs."""
    import subprocess

    copy_code(folder)
    venv = str(ROOT / ".venv" / "bin")
    env = {**os.environ, "PATH": f"{venv}{os.pathsep}{os.environ['PATH']}"}
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "r2n2"],
                ["git", "config", "user.email", "r2n2@localhost"], ["dvc", "init", "-q"], ["r2n2", "dvc-yaml"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "a tiny project"]):
        subprocess.run(cmd, cwd=folder, check=True, capture_output=True, env=env)


def rebuild_retrain(retrain: dict, folder, files: list[str], run_stage, *, holding_later_rows: bool = False) -> str:
    """Rebuild one replay retrain in ``folder`` (a copy of ``files``) through the stage commands with its ``set``
    (``run_stage(stage, set_args)`` runs `r2n2 <stage> <case>` there and returns its exit code); returns the
    sha256 of the model.pt it wrote. ``holding_later_rows``: first ingest the whole source with no ``set``, so
    the project already holds rows after the retrain's ``data.until`` (they must be dropped, not kept)."""
    import hashlib
    import os

    root = Path.cwd()
    folder.mkdir()
    for f in files:
        (folder / f).write_bytes((root / f).read_bytes())
    case = retrain["set"][0].split(".", 1)[0]
    extra = [x for s in retrain["set"] for x in ("--set", s)]
    os.chdir(folder)
    try:
        if holding_later_rows:
            assert run_stage("ingest", []) == 0, "ingest of the whole source"
        for stage in ("ingest", "validate", "window", "train"):
            assert run_stage(stage, extra) == 0, stage
        return hashlib.sha256((folder / f"data/models/{case}/model.pt").read_bytes()).hexdigest()
    finally:
        os.chdir(root)


def predict_sets(args: list[str]) -> list[str]:
    """The ``--set`` pairs of ``args`` (flag, value pairs) that `r2n2 predict` honours: the case's ``data.*`` keys
    that say how --input is read (not data.source or data.until). Predict refuses any other key: it would ignore it."""
    out: list[str] = []
    for flag, item in zip(args[::2], args[1::2]):
        part = item.split("=", 1)[0].split(".")
        if flag == "--set" and len(part) > 2 and part[1] == "data" and part[2] not in ("source", "until"):
            out += [flag, item]
    return out
