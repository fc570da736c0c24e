"""Checkpoints: round trip, config inside, atomic writes, safe loading."""

import pytest
import torch

from r2n2 import CheckpointError, ModelConfig, build_model, load_checkpoint, save_checkpoint


def test_round_trip_rebuilds_from_config(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell="gru", encoder_name="gru", hidden_size=6, input_size=3,
                                    pooling="attention")).eval()
    path = save_checkpoint(tmp_path / "m" / "model.pt", model, metadata={"epoch": 3, "case": "stocks"})
    loaded, meta = load_checkpoint(path)
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(loaded(x), model(x))
    assert meta == {"epoch": 3, "case": "stocks"}
    assert loaded.config == model.config
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp files left behind


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    model = build_model(ModelConfig(hidden_size=4))
    path = save_checkpoint(tmp_path / "model.pt", model)
    good = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_truncated_and_foreign_files_are_refused(tmp_path):
    model = build_model(ModelConfig(hidden_size=4))
    path = save_checkpoint(tmp_path / "model.pt", model)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="is not an r2n2 checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_pickled_code_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pwned')",))

    torch.save({"config": Evil(), "state_dict": {}}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(tmp_path / "evil.pt")


def test_mismatched_weights_are_refused(tmp_path):
    model = build_model(ModelConfig(hidden_size=4))
    payload = {"config": ModelConfig(hidden_size=5).to_dict(), "state_dict": model.state_dict(), "metadata": {}}
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="does not match its config"):
        load_checkpoint(tmp_path / "bad.pt")
