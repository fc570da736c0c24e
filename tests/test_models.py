"""Equivalence with the slides' formulas, mask invariance, state_dict compatibility, bad arguments."""

import json

import pytest
import torch
import yaml
from torch import nn

import r2n2
from r2n2 import ModelConfig, RelationalModule, build_model, lengths_to_mask

from . import slide_reference as ref
from .conftest import ROOT

torch.set_default_dtype(torch.float32)

SLIDE_PAIRS = [
    ("R2N2", (5, 8, 2), lambda: torch.randn(3, 9, 5)),
    ("EnhancedR2N2", (5, 8, 2), lambda: torch.randn(3, 9, 5)),
    ("AttentionR2N2", (5, 8, 2), lambda: torch.randn(3, 9, 5)),
    ("StockPriceR2N2", (5, 8, 1, 2), lambda: torch.randn(3, 9, 5)),
    ("GRUR2N2", (5, 8, 2), lambda: torch.randn(3, 9, 5)),
    ("BidirectionalR2N2", (5, 8, 2), lambda: torch.randn(3, 9, 5)),
    ("VisualizableAttentionR2N2", (5, 8, 2), lambda: torch.randn(3, 9, 5)),
    ("SentimentR2N2", (50, 6, 8, 3), lambda: torch.randint(0, 50, (3, 9))),
]


@pytest.mark.parametrize("name,args,make_x", SLIDE_PAIRS, ids=[p[0] for p in SLIDE_PAIRS])
def test_slide_state_dict_loads_strict_and_outputs_match(name, args, make_x):
    torch.manual_seed(0)
    slide = getattr(ref, name)(*args).eval()
    ours = getattr(r2n2, name)(*args).eval()
    ours.load_state_dict(slide.state_dict(), strict=True)
    slide.load_state_dict(ours.state_dict(), strict=True)  # and back
    x = make_x()
    expected, got = slide(x), ours(x)
    if name == "SentimentR2N2":  # the slide returns softmax from forward; we return logits
        got = ours.predict_proba(x)
    if name == "VisualizableAttentionR2N2":
        torch.testing.assert_close(got[1], expected[1], atol=1e-5, rtol=1e-5)
        expected, got = expected[0], got[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_masked_matches_slide_formula():
    torch.manual_seed(0)
    slide, ours = ref.MaskedR2N2(4, 8, 2), r2n2.MaskedR2N2(4, 8, 2)
    ours.load_state_dict(slide.state_dict(), strict=True)
    x, lengths = torch.randn(4, 7, 4), torch.tensor([3, 7, 5, 2])
    torch.testing.assert_close(ours(x, lengths), slide(x, lengths), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("T", [1, 5, 40])
def test_relational_all_pairs_equals_slide(T):
    torch.manual_seed(1)
    slide, ours = ref.RelationalModule(8), RelationalModule(8, chunk_size=7)
    ours.load_state_dict(slide.state_dict(), strict=True)
    h = torch.randn(3, T, 8, requires_grad=True)
    h2 = h.detach().clone().requires_grad_(True)
    expected, got = slide(h), ours(h2)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # gradients through the chunked, checkpointed path equal the slide's too
    expected.sum().backward()
    got.sum().backward()
    torch.testing.assert_close(h2.grad, h.grad, atol=1e-5, rtol=1e-5)
    for (n, p), q in zip(ours.named_parameters(), slide.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4, msg=n)


@pytest.mark.parametrize("masked", [False, True])
def test_relational_chunks_equal_one_pass_at_20_entities(masked):
    """The built-in panel's shape (32 dates x 20 stocks x 32 units), 3 queries at a time vs all 20 in one pass
    (what the automatic chunk gives there): the relations and the gradients of the input, fc1 and fc2's bias
    are bit for bit the same; fc2's weight gradient is one float sum over every query, which the chunked
    backward adds up chunk by chunk, so it agrees to rounding only (measured 2.4e-6 of its largest entry)."""
    torch.manual_seed(11)
    one, chunked = RelationalModule(32), RelationalModule(32, chunk_size=3)
    chunked.load_state_dict(one.state_dict())
    h = torch.randn(32, 20, 32)
    mask = None
    if masked:
        mask = torch.ones(32, 20, dtype=torch.bool)
        mask[::3, 15:] = False
    results = []
    for mod in (one, chunked):
        x = h.clone().requires_grad_(True)
        out = mod(x, mask)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), x.grad, {n: p.grad for n, p in mod.named_parameters()}))
    (out1, dx1, g1), (out2, dx2, g2) = results
    assert torch.equal(out1, out2) and torch.equal(dx1, dx2)
    for name in ("fc1.weight", "fc1.bias", "fc2.bias"):
        assert torch.equal(g1[name], g2[name]), name
    scale = float(g1["fc2.weight"].abs().max())
    torch.testing.assert_close(g2["fc2.weight"], g1["fc2.weight"], rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("masked", [False, True])
def test_relational_one_query_backward_paths_agree(masked, monkeypatch):
    """A single query over few keys (T <= 0.75 H) takes the dense GEMM backward, otherwise the per-unit one: the
    same gradients to rounding at the sentiment shape, and the dense one passes gradcheck in float64."""
    from r2n2.models import relational

    torch.manual_seed(5)
    B, T, H = 16, 12, 32  # T / H = 0.375: the dense path by default
    a, c = torch.randn(B, 1, H), torch.randn(B, T, H)
    w2, b2, g = torch.randn(H, H), torch.randn(H), torch.randn(B, 1, H)
    mask = None
    if masked:
        mask = torch.ones(B, T, dtype=torch.bool)
        mask[::3, 7:] = False
    grads = {}
    for limit in (relational.DENSE_MAX_KEYS_PER_UNIT, 0.0):  # 0.0: every shape takes the per-unit path
        monkeypatch.setattr(relational, "DENSE_MAX_KEYS_PER_UNIT", limit)
        leaves = [x.clone().requires_grad_(True) for x in (a, c, w2, b2)]
        relational._relate(leaves[0], leaves[1], mask, leaves[2], leaves[3]).backward(g)
        grads[limit] = [x.grad for x in leaves]
    for dense, per_unit in zip(*grads.values()):
        torch.testing.assert_close(dense, per_unit, rtol=1e-5, atol=1e-5 * float(per_unit.abs().max()))
    if masked:  # whatever sits at padded keys (a plug-in cell's inf) changes no gradient
        monkeypatch.setattr(relational, "DENSE_MAX_KEYS_PER_UNIT", 0.75)
        c_inf = c.clone()
        c_inf[~mask] = float("inf")
        leaves = [x.clone().requires_grad_(True) for x in (a, c_inf, w2, b2)]
        relational._relate(leaves[0], leaves[1], mask, leaves[2], leaves[3]).backward(g)
        dense = grads[next(iter(grads))]
        assert all(torch.equal(x.grad, d) for x, d in zip(leaves, dense))
    monkeypatch.setattr(relational, "DENSE_MAX_KEYS_PER_UNIT", 0.75)
    leaves = [x[:4].double().requires_grad_(True) for x in (a, c)] + [
        x.double().requires_grad_(True) for x in (w2, b2)]
    key_mask = None if mask is None else mask[:4]
    assert torch.autograd.gradcheck(lambda *xs: relational._relate(xs[0], xs[1], key_mask, xs[2], xs[3]), leaves)


def test_relational_single_query_equals_row_of_all_pairs():
    torch.manual_seed(2)
    mod = RelationalModule(6)
    h = torch.randn(4, 10, 6)
    query = torch.tensor([9, 0, 4, 7])
    full = mod(h)
    torch.testing.assert_close(mod(h, query=query), full[torch.arange(4), query])


def _padded_vs_alone(model, xs, *, tokens=False):
    """Output of each sequence alone vs inside a right-padded batch (pad values are garbage on purpose)."""
    lengths = torch.tensor([len(x) for x in xs])
    T = int(lengths.max())
    if tokens:
        batch = torch.randint(0, 20, (len(xs), T))
    else:
        batch = torch.randn(len(xs), T, xs[0].shape[-1]) * 100
    for i, x in enumerate(xs):
        batch[i, :len(x)] = x
    together = model(batch, lengths)
    alone = torch.cat([model(x.unsqueeze(0)) for x in xs])
    return together, alone


CONFIGS = [
    dict(cell="rnn", relational=True, pooling="last"),
    dict(cell="gru", relational=True, pooling="mean"),
    dict(cell="lstm", relational=True, pooling="attention", num_layers=2),
    dict(cell="rnn", relational=False, pooling="attention", bidirectional=True),
    dict(cell="gru", relational=True, pooling="last", bidirectional=True),
    dict(cell="rmc", relational=True, pooling="last", mem_slots=2, head_size=4, num_heads=2),
    dict(cell="rmc", relational=False, pooling="mean", mem_slots=3, head_size=4, num_heads=1, num_layers=2),
    dict(cell="gru", relational=True, pooling="max"),
    dict(cell="lstm", relational=True, pooling="concat", bidirectional=True),
    dict(cell="rnn", relational=False, pooling="concat"),
]


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_padding_never_changes_output(kw):
    torch.manual_seed(3)
    model = build_model(ModelConfig(input_size=3, hidden_size=8, output_size=2, **kw)).eval()
    xs = [torch.randn(n, 3) for n in (5, 1, 8, 3)]
    together, alone = _padded_vs_alone(model, xs)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_padding_never_changes_output_tokens():
    torch.manual_seed(4)
    model = build_model(ModelConfig(vocab_size=20, embed_size=4, hidden_size=8, output_size=3,
                                    task="classification", pooling="attention")).eval()
    xs = [torch.randint(0, 20, (n,)) for n in (6, 2, 9)]
    together, alone = _padded_vs_alone(model, xs, tokens=True)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_relational_mask_ignores_padded_keys_and_queries():
    torch.manual_seed(5)
    mod = RelationalModule(4)
    h = torch.randn(2, 6, 4)
    mask = lengths_to_mask(torch.tensor([4, 6]), 6)
    out = mod(h, mask)
    torch.testing.assert_close(out[0, :4], mod(h[:1, :4])[0])
    assert torch.all(out[0, 4:] == 0)


def test_multi_entity_relates_entities():
    torch.manual_seed(6)
    model = r2n2.MultiEntityR2N2(3, 4, 8, 2).eval()
    x = torch.randn(2, 3, 10, 4)
    y = model(x)
    x2 = x.clone()
    x2[:, 2] = torch.randn(2, 10, 4)  # change entity 2 only
    y2 = model(x2)
    assert not torch.allclose(y[:, 0], y2[:, 0])  # entity 0's output depends on entity 2: relation happened
    perm = torch.tensor([2, 0, 1])
    torch.testing.assert_close(model(x[:, perm]), y[:, perm])  # permutation-equivariant across entities
    with pytest.raises(ValueError, match="built for 3 entities, got input with 2"):
        model(x[:, :2])


@pytest.mark.parametrize("relation", ["pairwise", "attention"])
def test_entity_identity_breaks_the_symmetry_of_the_stocks(relation):
    """Without identity the entity relation cannot tell stocks apart (permuting them permutes the outputs), so
    "my leader is s00" is inexpressible; with it, the same permuted input gives different outputs per stock."""
    torch.manual_seed(7)
    cfg = ModelConfig(input_size=4, hidden_size=8, entities=True, relation=relation, num_heads=2)
    x, perm = torch.randn(2, 3, 10, 4), torch.tensor([2, 0, 1])
    blind = build_model(cfg).eval()
    torch.testing.assert_close(blind(x[:, perm]), blind(x)[:, perm])
    named = build_model(ModelConfig(**{**cfg.to_dict(), "identity": True, "num_entities": 3})).eval()
    assert not torch.allclose(named(x[:, perm]), named(x)[:, perm])
    assert named.identity.weight.shape == (3, 8)
    with pytest.raises(ValueError, match="knows 3 entities by identity, got input with 2"):
        named(x[:, :2])
    again = build_model(named.config)
    again.load_state_dict(named.state_dict(), strict=True)  # the config in a checkpoint rebuilds it
    torch.testing.assert_close(again.eval()(x), named(x))


def test_transfer_shares_encoder_and_freeze():
    model = build_model(ModelConfig(input_size=3, hidden_size=8, output_size=1))
    new = model.with_new_head(4, task="classification")
    assert new.rnn is model.rnn and new.fc.out_features == 4
    new.freeze_encoder()
    trainable = {n for n, p in new.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    new.freeze_encoder(False)
    assert all(p.requires_grad for p in new.parameters())


@pytest.mark.parametrize("kw,msg", [
    (dict(cell="transformer"), "model.cell must be one of rnn, gru, lstm, rmc, got 'transformer'."),
    (dict(identity=True), "model.identity needs model.entities (it tells the entities of a panel apart)."),
    (dict(entities=True, relation="max"),
     "model.relation must be one of pairwise, attention, got 'max'."),
    (dict(entities=True, num_entities=-1), "model.num_entities must be an integer >= 0, got -1."),
    (dict(cell="rmc", bidirectional=True), "model.bidirectional is not supported with cell 'rmc'."),
    (dict(hidden_size=0), "model.hidden_size must be a positive integer, got 0."),
    (dict(pooling="sum"), "model.pooling must be one of last, attention, mean, max, concat, got 'sum'."),
    (dict(pooling="concat", entities=True), "model.pooling 'concat' cannot be combined with model.entities."),
    (dict(dropout=1.5), "model.dropout must be in [0, 1), got 1.5."),
    (dict(hidden_size=9, relation="attention"), "model.num_heads (2) must divide the width the attention relation "
                                                 "reads (9); choose a divisor of 9 or relation pairwise."),
])
def test_bad_config(kw, msg):
    with pytest.raises(ValueError) as err:
        ModelConfig(**kw)
    assert str(err.value) == msg


def test_unknown_config_key():
    with pytest.raises(ValueError, match="unknown model config key\\(s\\): hiden_size."):
        ModelConfig.from_dict({"hiden_size": 3})


def test_bad_inputs():
    model = build_model(ModelConfig(input_size=3, hidden_size=4))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, steps, 3\), got \(2, 5, 4\)"):
        model(torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\]"):
        model(torch.randn(2, 5, 3), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="mask must be right-padded"):
        model(torch.randn(2, 5, 3), mask=torch.tensor([[1, 0, 1, 0, 0], [1, 1, 1, 1, 1]]).bool())


def test_custom_cell_plugs_in(monkeypatch):
    import torch.nn as nn

    from r2n2.models import config as config_module

    class Leaky(nn.Module):
        """A tiny custom cell: an exponential moving average of a projection, masked steps keep state."""

        def __init__(self, cfg, input_size):
            super().__init__()
            self.proj, self.output_size = nn.Linear(input_size, 6), 6

        def forward(self, x, state=None, mask=None):
            h = torch.zeros(x.size(0), 6) if state is None else state
            outs = []
            for t in range(x.size(1)):
                new = 0.5 * h + 0.5 * torch.tanh(self.proj(x[:, t]))
                h = new if mask is None else torch.where(mask[:, t:t + 1], new, h)
                outs.append(h)
            return torch.stack(outs, 1), h

    monkeypatch.setattr(config_module, "CUSTOM_CELLS", {})
    monkeypatch.setattr("r2n2.models.core.CUSTOM_CELLS", config_module.CUSTOM_CELLS)
    r2n2.register_cell("leaky", Leaky)
    model = build_model(ModelConfig(input_size=3, cell="leaky", output_size=2)).eval()
    assert model(torch.randn(4, 7, 3)).shape == (4, 2)
    xs = [torch.randn(n, 3) for n in (5, 2, 7)]
    together, alone = _padded_vs_alone(model, xs)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_focus_shares_sum_to_one_and_skip_padding():
    torch.manual_seed(7)
    model = build_model(ModelConfig(input_size=3, hidden_size=8, output_size=2)).eval()
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 2, 4])
    w, kind = model.focus(x, lengths)
    assert kind.startswith("relational focus") and w.shape == (3, 6)
    torch.testing.assert_close(w.sum(1), torch.ones(3))
    assert torch.all(w[1, 2:] == 0) and torch.all(w[2, 4:] == 0)
    attn = build_model(ModelConfig(input_size=3, hidden_size=8, pooling="attention", relational=False)).eval()
    w, kind = attn.focus(x, lengths)
    assert kind == "attention weights" and torch.all(w[1, 2:] == 0)


def test_concat_pooling_is_last_max_mean_of_the_states():
    torch.manual_seed(8)
    model = build_model(ModelConfig(input_size=3, hidden_size=5, output_size=2, pooling="concat")).eval()
    x, lengths = torch.randn(3, 7, 3), torch.tensor([7, 2, 4])
    mask = lengths_to_mask(lengths, 7)
    h = model.encode(x, mask)
    z, _ = model.pool(h, mask, relational=True)
    for b, n in enumerate(lengths.tolist()):
        real = h[b, :n]
        torch.testing.assert_close(z[b, :5], model.relational(h[b:b + 1, :n], query=torch.tensor([n - 1]))[0])
        torch.testing.assert_close(z[b, 5:10], real.max(0).values)
        torch.testing.assert_close(z[b, 10:], real.mean(0))
    assert model.fc.in_features == 15


def test_max_pooling_focus_counts_winning_steps():
    torch.manual_seed(9)
    model = build_model(ModelConfig(input_size=3, hidden_size=8, output_size=2, pooling="max",
                                    relational=False)).eval()
    x, lengths = torch.randn(2, 5, 3), torch.tensor([5, 3])
    w, kind = model.focus(x, lengths)
    assert kind.startswith("max-pooling focus")
    torch.testing.assert_close(w.sum(1), torch.ones(2))
    assert torch.all(w[1, 3:] == 0)


@pytest.mark.parametrize("pooling", ["last", "max"])
def test_relational_backward_under_bf16_autocast(pooling):
    """Mixed precision (bf16 activations, fp32 weights), as the trainer runs on CUDA: gradients come back in
    the parameters' dtype and point where the fp32 gradients point."""
    torch.manual_seed(10)
    model = build_model(ModelConfig(vocab_size=30, embed_size=8, hidden_size=8, output_size=3,
                                    task="classification", pooling=pooling))
    x, lengths = torch.randint(0, 30, (6, 9)), torch.tensor([9, 4, 1, 7, 9, 2])
    model(x, lengths).square().sum().backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, lengths)
    assert out.dtype == torch.bfloat16
    out.float().square().sum().backward()
    for n, p in model.named_parameters():
        assert p.grad.dtype == p.dtype == torch.float32, n
        cosine = torch.nn.functional.cosine_similarity(p.grad.flatten(), reference[n].flatten(), dim=0)
        assert cosine > 0.98, (n, float(cosine))


def test_a_registered_relation_trains_through_the_panel_stages(tmp_path, monkeypatch):
    """``register_relation`` plugs a relational module in as ``model.relation`` (params included): a toy relation
    (each entity adds a learned map of the others' mean) trains and evaluates through the panel's stages, and the
    checkpoint rebuilds it."""
    from r2n2.checkpoint import load_checkpoint
    from r2n2.config import with_values
    from r2n2.models import config as config_module
    from r2n2.registry import get_case
    from r2n2.stages import run_stage

    class MeanField(nn.Module):
        def __init__(self, cfg, width):
            super().__init__()
            self.mix = nn.Linear(width, width)

        def forward(self, h, mask=None, query=None):
            m = torch.ones(h.shape[:2], dtype=h.dtype) if mask is None else mask.to(h.dtype)  # (B, T)
            total = (h * m.unsqueeze(-1)).sum(1, keepdim=True)  # (B, 1, D) over the real steps or entities
            others = (total - h * m.unsqueeze(-1)) / (m.sum(1) - 1).clamp(min=1)[:, None, None]  # (B, T, D)
            out = h + self.mix(others)
            return out if query is None else out[torch.arange(h.size(0)), query]  # (B, D) with a query

    monkeypatch.setattr(config_module, "CUSTOM_RELATIONS", {})
    monkeypatch.setattr("r2n2.models.core.CUSTOM_RELATIONS", config_module.CUSTOM_RELATIONS)
    r2n2.register_relation("mean_field", MeanField)
    with pytest.raises(ValueError, match="relation name 'pairwise' is built in"):
        r2n2.register_relation("pairwise", MeanField)
    panel = get_case("panel")
    cfg = with_values(panel.config_cls(), {**panel.example(tmp_path), "model.relation": "mean_field",
                                           "evaluate.plots": False})
    for stage in ("ingest", "validate", "window", "train", "baselines", "evaluate"):
        run_stage(stage, panel, cfg, tmp_path, log=lambda _: None)
    model, _ = load_checkpoint(tmp_path / "data/models/panel/model.pt")
    assert isinstance(model.relational, MeanField) and model.config.relation == "mean_field"
    assert json.loads((tmp_path / "data/reports/panel/metrics.json").read_text())["model"]["rank_ic"] is not None


@pytest.mark.parametrize("relation", ["pairwise", "attention"])
def test_sequence_relations_ignore_padding_and_answer_one_query(relation):
    """Either built-in relation on single sequences: padding never changes an output, and the last-step query
    gives the row the all-pairs pass gives."""
    torch.manual_seed(3)
    model = build_model(ModelConfig(input_size=3, hidden_size=8, output_size=2, relation=relation)).eval()
    xs = [torch.randn(n, 3) for n in (5, 2, 7)]
    together, alone = _padded_vs_alone(model, xs)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    h = torch.randn(2, 6, 8)
    rows = model.relational(h, None, query=torch.tensor([5, 3]))
    full = model.relational(h)
    torch.testing.assert_close(rows, torch.stack([full[0, 5], full[1, 3]]), atol=1e-6, rtol=1e-6)


def test_old_entity_relation_key_still_loads_and_params_name_the_new_one():
    """Checkpoints written before the rename (``entity_relation``) load; params with the old key get a
    one-line error that names the new one."""
    from r2n2.config import ConfigError
    from r2n2.registry import parse_params

    old = {**ModelConfig(entities=True, relation="attention", num_heads=2).to_dict()}
    old["entity_relation"] = old.pop("relation")
    assert ModelConfig.from_dict(old).relation == "attention"
    sequence = {**ModelConfig(hidden_size=8).to_dict(), "entity_relation": "attention"}
    sequence.pop("relation")
    assert ModelConfig.from_dict(sequence).relation == "pairwise"  # it chose the entities' relation only
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["panel"]["model"]["entity_relation"] = raw["panel"]["model"].pop("relation")
    with pytest.raises(ConfigError, match=r"^unknown key panel\.model\.entity_relation \(renamed: "
                                          r"panel\.model\.relation\); allowed: "):
        parse_params(raw)


def test_entity_mixing_starts_closed_and_learns_who_leads():
    """``entity_mixing``: each entity's state plus M (entities x entities, from 0, no self-loop) times a map of
    every other entity's newest features. At M = 0 the model is the one without it; a planted lead (entity 1's
    target is entity 0's newest feature) is fitted through M[1, 0]."""
    torch.manual_seed(5)
    cfg = ModelConfig(input_size=2, hidden_size=8, entities=True, identity=True, num_entities=3, entity_mixing=True)
    mixed = build_model(cfg)
    plain = build_model(ModelConfig(**{**cfg.to_dict(), "entity_mixing": False}))
    plain.load_state_dict({k: v for k, v in mixed.state_dict().items() if not k.startswith("mixing")})
    x = torch.randn(16, 3, 5, 2)
    torch.testing.assert_close(mixed.eval()(x), plain.eval()(x))  # M = 0: the path is closed
    with pytest.raises(ValueError, match="knows 3 entities by identity, got input with 2"):
        mixed(x[:, :2])
    with pytest.raises(ValueError, match=r"^model.entity_mixing needs model.entities"):
        ModelConfig(entity_mixing=True)
    opt = torch.optim.Adam(mixed.parameters(), lr=0.02)
    mixed.train()
    for _ in range(300):
        x = torch.randn(64, 3, 5, 2)
        y = torch.zeros(64, 3, 1)
        y[:, 1, 0] = x[:, 0, -1, 0]  # the follower's target: the leader's newest first feature
        loss = ((mixed(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    m = mixed.mixing.detach().abs()
    assert loss.item() < 0.05 and m[1, 0] == m.max(), (loss.item(), m)
