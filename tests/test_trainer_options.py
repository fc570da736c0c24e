"""Trainer options on a tiny in-memory text task: weight EMA (resume, frozen weights, limit case) and label
smoothing (the loss formula, config validation)."""

import numpy as np
import pytest
import torch

from r2n2 import ModelConfig, build_model
from r2n2.config import TrainConfig
from r2n2.registry import load_params
from r2n2.data.window import TextBatches
from r2n2.errors import ConfigError
from r2n2.train import train_model

from .conftest import ROOT


def tiny_task(n=192, seed=0):
    """Token 1 in a text means class 0, token 2 class 1, token 3 class 2; the rest is noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    ids = [np.concatenate([rng.integers(4, 30, rng.integers(2, 9)), [label + 1]]) for label in labels]
    return ids, labels


def batches(split_seed=0):
    ids, labels = tiny_task(seed=split_seed)
    return TextBatches(ids[:144], labels[:144], 16, True, 0), TextBatches(ids[144:], labels[144:], 64)


def model():
    torch.manual_seed(0)
    return build_model(ModelConfig(vocab_size=30, embed_size=8, hidden_size=8, output_size=3,
                                   task="classification", cell="gru", pooling="concat"))


def cfg(**kw):
    return TrainConfig(**{"epochs": 3, "lr": 0.01, "patience": 3, "device": "cpu", "scheduler": "none", **kw})


def weights(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_ema_resume_after_a_kill_is_bit_identical(tmp_path):
    train, val = batches()
    whole = model()
    train_model(whole, train, val, cfg(ema_decay=0.9), progress=False)

    class Killed(Exception):
        pass

    def kill(epoch, metric):
        if epoch == 2:
            raise Killed

    killed = model()
    with pytest.raises(Killed):
        train_model(killed, train, val, cfg(ema_decay=0.9), state_path=tmp_path / "s.pt", run_id="x",
                    progress=False, epoch_callback=kill)
    resumed = model()
    result = train_model(resumed, train, val, cfg(ema_decay=0.9), state_path=tmp_path / "s.pt", run_id="x",
                         progress=False)
    assert result.resumed_from == 2  # epochs counted from 1: two were finished
    for k, v in weights(whole).items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_ema_keeps_frozen_weights_bit_identical_and_changes_the_rest():
    train, val = batches()
    m = model()
    before = weights(m)
    m.freeze_encoder(True)
    train_model(m, train, val, cfg(ema_decay=0.95), progress=False)
    for k, v in m.state_dict().items():
        if k.startswith("fc."):
            assert not torch.equal(v, before[k]), k
        else:
            assert torch.equal(v, before[k]), k


def test_ema_with_a_vanishing_decay_is_plain_training():
    """EMA_t = d·EMA_{t-1} + (1-d)·w_t: as d -> 0 the average is the current weights."""
    train, val = batches()
    plain, averaged = model(), model()
    train_model(plain, train, val, cfg(), progress=False)
    train_model(averaged, train, val, cfg(ema_decay=1e-12), progress=False)
    for k, v in plain.state_dict().items():
        torch.testing.assert_close(averaged.state_dict()[k], v, atol=1e-6, rtol=1e-6)


def test_ema_changes_the_kept_weights():
    train, val = batches()
    plain, averaged = model(), model()
    r1 = train_model(plain, train, val, cfg(), progress=False)
    r2 = train_model(averaged, train, val, cfg(ema_decay=0.9), progress=False)
    assert [h["train_loss"] for h in r1.history] == [h["train_loss"] for h in r2.history]  # same raw training
    assert any(not torch.equal(v, averaged.state_dict()[k]) for k, v in plain.state_dict().items())


def test_label_smoothing_loss_matches_the_formula():
    """Train one epoch of one batch with lr 0 and compare the logged loss with the smoothed cross-entropy
    (class weights off): (1-e)·CE(y) + e·mean_k CE(k)."""
    ids, labels = tiny_task(16)
    train = TextBatches(ids, labels, 16)
    m = model()
    result = train_model(m, train, train, cfg(epochs=1, lr=0.0, label_smoothing=0.2, class_weights=False,
                                              weight_decay=0.0), progress=False)
    m.train()
    torch.manual_seed(0)  # the trainer's seed: same dropout mask as its one step
    x, lengths, y = next(train.iter_epoch(0))
    with torch.no_grad():
        logp = torch.log_softmax(m(x, lengths), dim=-1)
    expected = (0.8 * -logp[torch.arange(len(y)), y] + 0.2 * -logp.mean(-1)).mean()
    assert result.history[0]["train_loss"] == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("key,value", [("label_smoothing", 1.0), ("ema_decay", -0.1), ("ema_decay", 1.0)])
def test_bad_trainer_option_is_named(key, value):
    with pytest.raises(ConfigError) as err:
        load_params(ROOT / "params.yaml", [f"sentiment.train.{key}={value}"])
    assert str(err.value) == f"sentiment.train.{key} must be in [0, 1), got {value}."
