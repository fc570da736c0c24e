"""The N-th farthest benchmark's task generator (benchmarks/nth_farthest.py): labels, encoding, determinism."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location(
    "nth_farthest", Path(__file__).resolve().parents[1] / "benchmarks" / "nth_farthest.py")
nf = importlib.util.module_from_spec(_spec)
sys.modules["nth_farthest"] = nf  # dataclasses look their module up there
_spec.loader.exec_module(nf)


def _decode(x, K, d):
    """(K, d + 3K) steps -> (vectors indexed by id (K, d), N in 1..K, m)."""
    ids = x[:, d:d + K].argmax(1)
    vectors = np.empty((K, d))
    vectors[ids] = x[:, :d]
    return vectors, int(x[0, d + K:d + 2 * K].argmax()) + 1, int(x[0, d + 2 * K:].argmax())


@pytest.mark.parametrize("K,d", [(4, 4), (8, 16), (3, 2)])
def test_labels_match_brute_force(K, d):
    x, y, n, m = nf.nth_farthest_batch(np.random.default_rng(1), 300, K, d)
    for i in range(len(y)):
        vectors, N, ref = _decode(x[i], K, d)
        assert (N, ref) == (n[i], m[i])
        dist = [float(np.sqrt(((vectors[j] - vectors[ref]) ** 2).sum())) for j in range(K)]
        ranked = sorted(range(K), key=lambda j: dist[j], reverse=True)  # farthest first
        assert y[i] == ranked[N - 1]
    assert np.all(y[n == K] == m[n == K])  # N = K is m itself
    assert np.all(y[n != K] != m[n != K])


def test_encoding_shape_and_one_hots():
    K, d, B = 4, 4, 50
    x, y, n, m = nf.nth_farthest_batch(np.random.default_rng(0), B, K, d)
    assert x.shape == (B, K, d + 3 * K) and x.dtype == np.float32
    assert y.shape == (B,) and y.dtype == np.int64 and set(np.unique(y)) <= set(range(K))
    assert np.all((-1 <= x[..., :d]) & (x[..., :d] <= 1))
    one_hots = x[..., d:].reshape(B, K, 3, K)
    assert np.all(one_hots.sum(-1) == 1)
    assert np.all(np.sort(one_hots[:, :, 0].argmax(-1), axis=1) == np.arange(K))  # every id shown once
    assert np.all(one_hots[:, :, 1:] == one_hots[:, :1, 1:])  # N and m are the same on every step
    assert set(np.unique(n)) == set(range(1, K + 1)) and set(np.unique(m)) == set(range(K))


def test_generator_is_deterministic_for_a_seed():
    a = nf.nth_farthest_batch(np.random.default_rng(7), 20, 4, 4)
    b = nf.nth_farthest_batch(np.random.default_rng(7), 20, 4, 4)
    c = nf.nth_farthest_batch(np.random.default_rng(8), 20, 4, 4)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_models_give_logits_over_the_ids():
    import torch

    s = nf.replace(nf.SETTINGS["reduced"], hidden=8, head_size=4, num_heads=2, num_blocks=1, mlp=(8,))
    x = torch.from_numpy(nf.nth_farthest_batch(np.random.default_rng(0), 3, s.objects, s.features)[0])
    for name in nf.MODELS:
        assert nf.make_model(name, s)(x).shape == (3, s.objects)
    with pytest.raises(ValueError, match="unknown model"):
        nf.make_model("transformer", s)
