"""Byte-identical reproduction (issue 13): every DVC-tracked output is a pure function of code, data and params,
so two independent copies of a project that run the same chain end with the same ``dvc.lock`` hashes and the
same bytes, and a fresh clone's ``dvc repro`` leaves the committed ``dvc.lock`` unchanged."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from .conftest import ROOT, copy_code, make_prices, write_tiny_project

STOCKS_STAGES = {f"{s}-stocks" for s in ("ingest", "validate", "window", "train", "baselines", "finetune", "evaluate")}


def _env(project: Path) -> dict:
    """The user's environment, with the venv's ``r2n2`` first and the copy's own code imported (not the checkout's),
    so each copy runs exactly the source DVC hashes for it, at its own absolute path."""
    return {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}", "PYTHONPATH": str(project),
            "DVC_NO_ANALYTICS": "1", "GX_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=_env(cwd), capture_output=True, text=True)


def _lock_hashes(project: Path) -> dict:
    """{(stage, "deps"|"outs", path): md5} and {(stage, "params"): params} from a dvc.lock."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    out = {}
    for name, st in lock.items():
        for kind in ("deps", "outs"):
            for entry in st.get(kind, []):
                out[(name, kind, entry["path"])] = entry["md5"]
        out[(name, "params")] = st.get("params")
    return out


def _tracked_files(project: Path) -> dict[str, bytes]:
    """Every file under data/ that an output in dvc.lock names (folders walked), relative path -> bytes."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    files = {}
    for st in lock.values():
        for entry in st.get("outs", []):
            p = project / entry["path"]
            for f in ([p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())):
                files[f.relative_to(project).as_posix()] = f.read_bytes()
    return files


@pytest.mark.slow
def test_two_copies_reproduce_identical_lock_hashes_and_bytes(tmp_path):
    # Different path lengths and names: an absolute path inside any output changes its bytes.
    first, second = tmp_path / "one", tmp_path / "a-second-copy-elsewhere"
    first.mkdir()
    write_tiny_project(first)
    copy_code(first)
    shutil.copytree(first, second)  # one snapshot of the code: the lead may edit the checkout meanwhile
    for project in (first, second):
        for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
            r = _run(cmd, project)
            assert r.returncode == 0, r.stderr[-2000:]
        r = _run(["dvc", "repro", "evaluate-stocks"], project)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]

    a, b = _lock_hashes(first), _lock_hashes(second)
    assert {k[0] for k in a} == STOCKS_STAGES
    differ = sorted(f"{k[0]} {k[1]} {k[2] if len(k) > 2 else ''}" for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    assert not differ, "dvc.lock hashes differ between the copies:\n" + "\n".join(differ)

    fa, fb = _tracked_files(first), _tracked_files(second)
    assert any(p.endswith(".pt") for p in fa) and any(p.endswith(".png") for p in fa)  # the chain really ran
    assert fa.keys() == fb.keys()
    differ = sorted(p for p in fa if fa[p] != fb[p])
    assert not differ, "tracked files differ between the copies:\n" + "\n".join(differ)
    for path, data in fa.items():  # belt and braces: no copy's folder name inside any output
        assert b"a-second-copy-elsewhere" not in fb[path] and str(tmp_path).encode() not in data, path


# -- unit level: plots and the validation summary ---------------------------------------------------------
def _png_chunks(data: bytes) -> list[str]:
    """The chunk types of a PNG, checking each chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, types = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + data[pos + 8:pos + 8 + n])
        types.append(kind.decode("ascii"))
        pos += 12 + n
    return types


def _every_plot(folder: Path) -> list[Path]:
    """Every PNG writer the evaluate stages call, with small fixed inputs."""
    import torch

    from r2n2.evaluate.plots import plot_confusion, plot_cumulative, plot_forecast, plot_learning_curves
    from r2n2.models.presets import visualize_attention

    rng = np.random.default_rng(0)
    dates = [f"2020-01-{d:02d}" for d in range(1, 31)]
    actual, predicted = rng.normal(0, 0.01, 30), rng.normal(0, 0.01, 30)
    history = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.1 / (e + 1)} for e in range(3)]
    return [plot_forecast(dates, actual, predicted, folder / "forecast.png", title="forecast"),
            plot_cumulative(dates, actual, predicted, folder / "cumulative.png", title="cumulative"),
            plot_confusion([[5, 1, 0], [2, 7, 1], [0, 1, 9]], ["neg", "neu", "pos"], folder / "confusion.png",
                           title="confusion"),
            plot_learning_curves({"model": history}, folder / "learning_curves.png", title="curves"),
            visualize_attention(torch.arange(24 * 5).reshape(24, 5), torch.full((24, 5), 0.2), folder / "attention.png",
                                title="attention")]


def test_plots_are_byte_identical_and_carry_no_text_or_time_chunks(tmp_path):
    runs = [_every_plot(tmp_path / "one"), _every_plot(tmp_path / "a-second" / "folder")]
    for p, q in zip(*runs):
        assert p.read_bytes() == q.read_bytes(), p.name
        # tEXt/zTXt/iTXt carry "Software: Matplotlib version ..." (changes on upgrade), tIME a date
        text = [c for c in _png_chunks(p.read_bytes()) if c in ("tEXt", "zTXt", "iTXt", "tIME")]
        assert not text, f"{p.name} embeds {text}"


def test_validation_summary_is_identical_across_folders_and_has_no_times(tmp_path, monkeypatch):
    from r2n2.registry import load_params
    from r2n2.registry import run_stage

    a, b = make_prices(300, seed=1), make_prices(300, seed=2)
    a.insert(0, "Entity", "alpha")
    b.insert(0, "Entity", "beta")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["stocks"]["data"].update({"source": "prices.csv", "columns": {"close": "Price"}})
    params["stocks"]["validate"]["min_rows"] = 100
    outputs = []
    for folder in (tmp_path / "one", tmp_path / "a-second" / "folder"):
        folder.mkdir(parents=True)
        pd.concat([a, b], ignore_index=True).to_csv(folder / "prices.csv", index=False)
        (folder / "params.yaml").write_text(yaml.safe_dump(params))
        cfg = load_params(folder / "params.yaml").case("stocks")
        monkeypatch.chdir(folder)  # the source path in params is relative to the project, as under DVC
        for name in ("ingest", "validate"):
            run_stage(name, "stocks", cfg, folder)
        reports = folder / "data" / "reports" / "stocks"
        outputs.append({f: (reports / f).read_bytes() for f in ("validation.json", "validation.html")}
                       | {"raw": (folder / "data/raw/stocks.parquet").read_bytes(),
                          "validated": (folder / "data/validated/stocks.parquet").read_bytes()})
    assert outputs[0] == outputs[1]
    for name in ("validation.json", "validation.html"):
        text = outputs[0][name].decode()
        assert str(tmp_path) not in text and not re.search(r"\d{2}:\d{2}(:\d{2})?|run_time|run_id|T\d{2}", text), name


def test_checkpoints_and_parquet_are_byte_identical_across_saves_and_folders(tmp_path):
    """torch.save given a *path* names the zip's inner folder after the file's stem, and the atomic writer's temp
    name is random: saving through the open file handle keeps the archive name fixed ("archive/")."""
    import zipfile

    import torch

    from r2n2.checkpoint import save_checkpoint
    from r2n2.io import write_parquet_atomic
    from r2n2.models.config import ModelConfig
    from r2n2.models.core import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(input_size=4, hidden_size=8))
    frame = make_prices(50)
    saved = []
    for folder in (tmp_path / "one", tmp_path / "a-second" / "folder"):
        ckpt = save_checkpoint(folder / "model.pt", model, metadata={"history": "[]", "seed": 0})
        table = write_parquet_atomic(frame, folder / "prices.parquet")
        saved.append((ckpt.read_bytes(), table.read_bytes()))
    assert saved[0] == saved[1]
    names = zipfile.ZipFile(tmp_path / "one" / "model.pt").namelist()
    assert all(n.startswith("archive/") for n in names), names[:3]
    assert str(tmp_path).encode() not in saved[0][0] + saved[0][1]
