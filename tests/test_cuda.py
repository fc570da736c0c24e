"""CUDA paths: bf16 autocast training, pinned batches, resume, checkpoints written on the GPU and read on the
CPU, and the custom relational backward on the GPU. Skipped where no CUDA device is present (CI); run them
on a GPU machine with `pytest tests/test_cuda.py`."""

import json
import math

import numpy as np
import pytest
import torch

from r2n2 import ModelConfig, RelationalModule, build_model, load_checkpoint
from r2n2.registry import get_case
from r2n2.registry import load_params
from r2n2.paths import CasePaths
from r2n2.registry import run_stage
from r2n2.train import predict_batches, train_model

from .conftest import write_tiny_project

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def cuda_project(tmp_path):
    """Tiny user data for both cases, ingested, validated and windowed, with train.device = cuda."""
    write_tiny_project(tmp_path)
    params = load_params(tmp_path / "params.yaml", ["stocks.train.device=cuda", "sentiment.train.device=cuda",
                                                    "sentiment.train.ema_decay=0.9"])
    for case in ("stocks", "sentiment"):
        cfg = params.case(case)
        cfg.data.source = str(tmp_path / cfg.data.source)
        for stage in ("ingest", "validate", "window"):
            run_stage(stage, case, cfg, tmp_path)
    return tmp_path, params


@pytest.mark.parametrize("case", ["stocks", "sentiment"])
def test_train_and_finetune_on_cuda_then_load_on_cpu(cuda_project, case):
    root, params = cuda_project
    cfg = params.case(case)
    run_stage("train", case, cfg, root)
    history = json.loads((root / "data" / "models" / case / "train_log.json").read_text())
    assert len(history) == cfg.train.epochs
    assert all(math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"]) for row in history)
    run_stage("finetune", case, cfg, root)

    model, meta = load_checkpoint(root / "data" / "models" / case / "model.pt")  # map_location = cpu
    assert all(p.device.type == "cpu" for p in model.parameters())
    data = get_case(case).load(cfg, CasePaths(case, root).windows)
    test = data.batches("pretrain", "test", batch_size=64)
    on_cpu = predict_batches(model, test, "cpu")
    on_gpu = predict_batches(model, test, "cuda")  # bf16 autocast
    assert on_cpu.shape == on_gpu.shape == (len(test.targets()), model.config.output_size)
    if case == "stocks":
        scale = np.abs(on_cpu).max() + 1e-6
        assert np.abs(on_cpu - on_gpu).max() / scale < 0.05
    else:
        assert (on_cpu.argmax(1) == on_gpu.argmax(1)).mean() > 0.9
    finetuned, _ = load_checkpoint(root / "data" / "models" / f"{case}-finetuned" / "model.pt")
    assert all(p.device.type == "cpu" for p in finetuned.parameters())


def test_resume_on_cuda_replays_the_finished_epochs(cuda_project):
    root, params = cuda_project
    cfg = params.case("sentiment")
    data = get_case("sentiment").load(cfg, CasePaths("sentiment", root).windows)

    def run(callback=None):
        torch.manual_seed(0)
        model = build_model(data.model_config())
        train = data.batches("pretrain", "train", batch_size=32, shuffle=True)
        val = data.batches("pretrain", "val", batch_size=64)
        return train_model(model, train, val, cfg.train, state_path=root / "state.pt", run_id="r", epochs=3,
                           progress=False, epoch_callback=callback)

    class Killed(Exception):
        pass

    def kill_after_second(epoch, metric):  # raised in epoch 3, before its state is written
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        run(kill_after_second)
    assert (root / "state.pt").is_file()
    saved = torch.load(root / "state.pt", map_location="cpu", weights_only=True)
    resumed = run()
    assert resumed.resumed_from == 2  # counted from 1: two epochs were finished
    assert len(resumed.history) == 3
    assert resumed.history[:2] == json.loads(saved["history"])
    assert not (root / "state.pt").exists()


@pytest.mark.parametrize("query", [None, "last"])
def test_relational_module_on_cuda_matches_cpu(query):
    torch.manual_seed(0)
    module = RelationalModule(16)
    x = torch.randn(4, 9, 16)
    lengths = torch.tensor([9, 5, 1, 7])
    mask = torch.arange(9)[None, :] < lengths[:, None]
    q = (lengths - 1) if query == "last" else None
    results = []
    for device in ("cpu", "cuda"):
        m = module.to(device)
        xi = x.detach().to(device).requires_grad_(True)  # a fresh leaf on each device
        out = m(xi, mask.to(device), query=None if q is None else q.to(device))
        out.square().sum().backward()
        results.append((out.detach().cpu(), xi.grad.cpu(), [p.grad.cpu() for p in m.parameters()]))
        m.zero_grad(set_to_none=True)
    (o1, g1, p1), (o2, g2, p2) = results
    torch.testing.assert_close(o1, o2, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(g1, g2, atol=1e-4, rtol=1e-4)
    for a, b in zip(p1, p2):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)


def test_rmc_model_on_cuda_matches_cpu():
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell="rmc", input_size=5, output_size=2, mem_slots=3, head_size=8,
                                    num_heads=2, pooling="max"))
    x = torch.randn(6, 12, 5)
    lengths = torch.tensor([12, 3, 7, 12, 1, 9])
    model.eval()
    on_cpu = model(x, lengths)
    on_gpu = model.to("cuda")(x.cuda(), lengths.cuda()).cpu()
    torch.testing.assert_close(on_cpu, on_gpu, atol=1e-4, rtol=1e-4)
