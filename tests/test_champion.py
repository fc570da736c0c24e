"""The champion's versions: each promotion is a content-addressed version with its history (when it served, on
which data, with which evidence); a rollback serves an earlier version again, byte for byte."""

import json

import pytest

from flows.cli import main
from r2n2.config import with_values
from r2n2.ops.champion import history, promote_if_not_worse
from r2n2.paths import CasePaths
from r2n2.registry import get_case, run_stage

from .conftest import predict_sets


@pytest.mark.slow
def test_rollback_then_predict_gives_that_versions_forecasts_byte_for_byte(project, capsys):
    case = get_case("stocks")
    values = case.example(project)
    # generous tolerances: this test is about versions, not the gate (the gate's own tests are test_promotion.py)
    values.update({"promotion.tolerance": 10.0, "promotion.benchmark_tolerance": 10.0})
    cfg = with_values(case.config_cls(), {**values, "data.until": "2016-09-30"})  # then three months arrive
    for stage in ("ingest", "validate", "window", "train"):
        run_stage(stage, "stocks", cfg, project)
    first = promote_if_not_worse(case, cfg, project)
    assert first["promoted"] and first["version"]
    sets = ["--set", f"stocks.data.source={values['data.source']}", "--set", "stocks.window.val_start=null",
            "--set", "stocks.window.test_start=null", "--set", "stocks.window.lookback=10",
            "--set", "stocks.model.hidden_size=8"]

    def predict(out: str) -> bytes:
        assert main(["predict", "stocks", "--input", values["data.source"], "--output", out, *predict_sets(sets)]) == 0
        return (project / out).read_bytes()

    a = predict("a.csv")
    rolling = with_values(case.config_cls(), {**values, "window.cuts": "rolling", "train.seed": 1})
    for stage in ("ingest", "validate", "window", "train"):
        run_stage(stage, "stocks", rolling, project)
    second = promote_if_not_worse(case, rolling, project)
    assert second["promoted"] and second["version"] != first["version"]
    assert predict("b.csv") != a
    capsys.readouterr()
    assert main(["champion", "rollback", "stocks", "--to", first["version"][:6]]) == 0
    assert first["version"] in capsys.readouterr().out
    assert predict("c.csv") == a  # the rolled-back version's forecasts, byte for byte
    h = history(CasePaths("stocks", project))
    assert [e["action"] for e in h] == ["promote", "promote", f"rollback to {first['version']}"]
    assert h[0]["cut_rule"] == "fixed" and h[1]["cut_rule"] == "rolling" and h[1]["data_sha256"]
    assert h[1]["evidence"]["window"] == second["window"] and h[2]["version"] == first["version"]
    assert main(["champion", "history", "stocks"]) == 0
    listing = capsys.readouterr().out
    assert listing.count(first["version"]) == 2 and second["version"] in listing
    assert json.loads((project / "data/ops/stocks/champion/champion.json").read_text())["version"] == first["version"]


def test_rollback_to_an_unknown_version_is_one_paragraph(project, capsys):
    assert main(["champion", "rollback", "stocks", "--to", "abc123"]) == 2
    err = capsys.readouterr().err
    assert "has no champion version 'abc123'; its versions: none" in err and "Traceback" not in err


@pytest.mark.parametrize("kill_at", ["versions", "history", "model", "after"])
def test_a_kill_at_any_write_of_a_promotion_leaves_one_consistent_champion(tmp_path, monkeypatch, kill_at):
    """Each write of ``record_version`` is atomic; the history is the commit point. Killed before it, the old
    champion stays with its history; killed after it, the next reader finishes the new one."""
    import hashlib

    from r2n2.cases.series import SeriesMeta
    from r2n2.ops import champion as ch

    paths = CasePaths("stocks", tmp_path)
    meta = SeriesMeta(case="stocks", time="date", splits={}, cuts={"start": "2015-01-02", "val_start": "2016-01-04",
                                                                    "test_start": "2016-06-01", "end": "2016-09-30"})
    old, new = tmp_path / "old.pt", tmp_path / "new.pt"
    old.write_bytes(b"old model bytes")
    new.write_bytes(b"new model bytes")
    v_old = ch.record_version(paths, old, meta, None)
    v_new = hashlib.sha256(new.read_bytes()).hexdigest()[:12]

    class Killed(BaseException):
        pass

    real_copy, real_json = ch.shutil.copyfile, ch.write_json_atomic

    def copy(src, dst, *a, **k):
        if (kill_at == "versions" and "versions" in str(dst)) or (kill_at == "model" and ".model.pt" in str(dst)):
            raise Killed
        return real_copy(src, dst, *a, **k)

    def write(obj, path, *a, **k):
        if kill_at == "history" and str(path).endswith("history.json"):
            raise Killed
        out = real_json(obj, path, *a, **k)
        if kill_at == "after" and str(path).endswith("history.json"):
            raise Killed
        return out

    monkeypatch.setattr(ch.shutil, "copyfile", copy)
    monkeypatch.setattr(ch, "write_json_atomic", write)
    with pytest.raises(Killed):
        ch.record_version(paths, new, meta, None)
    monkeypatch.undo()
    served = ch.sync_champion(paths)  # what the next retrain, monitor, predict or rollback does first
    expected = v_old if kill_at in ("versions", "history") else v_new
    assert served == expected == ch.history(paths)[-1]["version"]
    assert (paths.champion_dir / "model.pt").read_bytes() == (old if expected == v_old else new).read_bytes()
    assert json.loads((paths.champion_dir / "champion.json").read_text())["version"] == expected
    assert not [p for p in paths.champion_dir.rglob("*") if p.name.startswith(".")]  # no half-written file left


def test_a_corrupt_history_is_one_paragraph_and_changes_nothing(project, capsys):
    d = project / "data/ops/stocks/champion"
    d.mkdir(parents=True)
    (d / "history.json").write_text("{not json")
    assert main(["champion", "history", "stocks"]) == 2
    err = capsys.readouterr().err
    assert "is not a champion history written by r2n2" in err and "Traceback" not in err
    assert (d / "history.json").read_text() == "{not json"


def test_predict_reads_a_complete_champion_while_promotions_race_it(tmp_path):
    """What `r2n2 predict` does to read the champion (finish an interrupted promotion, then load model.pt), in a
    loop while another process promotes two versions in turn 200 times: every read is a complete checkpoint of
    one version or the other."""
    import subprocess
    import sys
    import textwrap

    import torch

    from r2n2.checkpoint import load_checkpoint, save_checkpoint
    from r2n2.models.config import ModelConfig
    from r2n2.models.core import build_model
    from r2n2.ops.champion import sync_champion

    meta = ('{"kind": "series", "case": "stocks", "time": "date", "splits": {}, "cuts": {"start": "2015-01-02", '
            '"val_start": "2016-01-04", "test_start": "2016-06-01", "end": "2016-09-30"}}')
    firsts = {}
    for name, seed in (("a", 0), ("b", 1)):
        torch.manual_seed(seed)
        model = build_model(ModelConfig(hidden_size=32))
        save_checkpoint(tmp_path / f"{name}.pt", model, metadata={"case": "stocks", "window_meta": meta})
        firsts[name] = float(next(model.parameters()).detach().sum())
    promoter = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from pathlib import Path
        from r2n2.cases.base import WindowMeta
        from r2n2.ops.champion import record_version
        from r2n2.paths import CasePaths
        import json
        root = Path({str(tmp_path)!r})
        meta = WindowMeta.from_dict(json.loads({meta!r}))
        for i in range(200):
            record_version(CasePaths("stocks", root), root / ("a.pt" if i % 2 == 0 else "b.pt"), meta, None)
        """)], stderr=subprocess.PIPE, text=True)
    paths = CasePaths("stocks", tmp_path)
    seen, reads = {"a": 0, "b": 0}, 0
    while promoter.poll() is None or reads < 200:
        if sync_champion(paths) is None:  # no version yet
            continue
        model, _ = load_checkpoint(paths.champion_dir / "model.pt")  # complete, or this raises
        first = float(next(model.parameters()).detach().sum())
        name = [n for n, v in firsts.items() if v == first]
        assert len(name) == 1, first  # one version or the other, never a mix
        seen[name[0]] += 1
        reads += 1
    assert promoter.wait() == 0, promoter.stderr.read()
    assert reads >= 200 and min(seen.values()) > 0, seen  # both versions were read while they raced
    assert len(history(paths)) == 200


@pytest.fixture
def full_disk(project):
    """``project/data`` on its own 32 MB tmpfs (a real file system that really fills up); yields a function that
    fills it to the last byte and returns a function that frees it again. Needs root (mount)."""
    import os
    import subprocess

    data = project / "data"
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(data)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root (CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    filler = data / "filler"

    def fill():
        with open(filler, "wb", buffering=0) as fh:  # unbuffered: nothing is left to flush at close
            for size in (1 << 16, 4096, 512, 1):  # big blocks, then down to the last byte
                try:
                    while True:
                        fh.write(b"\0" * size)
                except OSError:
                    pass
        return lambda: filler.unlink()

    try:
        yield fill
    finally:
        os.chdir(project.parent)
        subprocess.run(["umount", "-l", str(data)], check=False)


def test_a_full_disk_during_training_and_promotion_keeps_every_previous_output(project, full_disk, capsys):
    """A real ENOSPC (a tmpfs filled to the last byte): retraining exits 2 with one "disk full" paragraph and the
    previous model directory unchanged; a promotion raises the same and leaves the champion, its versions and its
    history as they were; once space is freed the same promotion completes."""
    import errno

    from r2n2.errors import DiskFull

    case = get_case("stocks")
    values = {**case.example(project), "promotion.tolerance": 10.0, "promotion.benchmark_tolerance": 10.0}
    cfg = with_values(case.config_cls(), {**values, "data.until": "2016-09-30"})
    for stage in ("ingest", "validate", "window", "train"):
        run_stage(stage, "stocks", cfg, project)
    first = promote_if_not_worse(case, cfg, project)
    assert first["promoted"]
    rolling = with_values(case.config_cls(), {**values, "window.cuts": "rolling", "train.seed": 1})
    for stage in ("ingest", "validate", "window", "train"):
        run_stage(stage, "stocks", rolling, project)
    data = project / "data"
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}

    free = full_disk()
    sets = [a for k, v in {**values, "window.cuts": "rolling", "train.seed": 2}.items()
            for a in ("--set", f"stocks.{k}={'null' if v is None else v}")]
    capsys.readouterr()
    assert main(["train", "stocks", *sets]) == 2
    stderr = capsys.readouterr().err
    err = stderr.strip().splitlines()[-1]  # after the progress lines, the one paragraph
    assert err.startswith("r2n2 train: disk full: writing ") and "Traceback" not in stderr
    assert "The previous" in err and "was kept" in err and len(err) < 700, err
    with pytest.raises(DiskFull, match="disk full: writing .*no space left") as caught:
        promote_if_not_worse(case, rolling, project)
    assert caught.value.errno is None or caught.value.errno == errno.ENOSPC
    after = {p: p.read_bytes() for p in data.rglob("*") if p.is_file() and p.name != "filler"}
    assert after == before  # the model, the champion, its versions and history: every byte as before
    assert not [p for p in data.rglob("*") if p.name.endswith((".tmp", ".r2n2-prev"))]

    free()
    second = promote_if_not_worse(case, rolling, project)
    assert second["promoted"] and second["version"] != first["version"]
    assert [e["version"] for e in history(CasePaths("stocks", project))] == [first["version"], second["version"]]
