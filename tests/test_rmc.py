"""Relational Memory Core: the reference's invariants and bad-argument checks."""

import pytest
import torch

from r2n2 import ModelConfig, RelationalMemory, RelationalMemoryRNN, build_model


def test_initial_state_is_identity_padded_or_truncated():
    wide = RelationalMemory(3, mem_slots=2, head_size=3, num_heads=1).initial_state(4)
    assert wide.shape == (4, 2, 3)
    torch.testing.assert_close(wide[1], torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
    narrow = RelationalMemory(3, mem_slots=4, head_size=1, num_heads=2).initial_state(1)
    torch.testing.assert_close(narrow[0], torch.eye(4)[:, :2])


@pytest.mark.parametrize("gate_style", ["unit", "memory"])
def test_input_erased_memory_unchanged(gate_style):
    torch.manual_seed(0)
    core = RelationalMemory(5, mem_slots=3, head_size=4, num_heads=2, gate_style=gate_style,
                            forget_bias=float("inf"), input_bias=float("-inf"))
    state = torch.randn(2, 3, 8)
    for _ in range(4):
        out, new = core(torch.randn(2, 5), state)
        assert torch.equal(new, state)
        assert torch.equal(out, state.flatten(1))


def test_output_shapes_and_gateless():
    core = RelationalMemory(5, mem_slots=3, head_size=4, num_heads=2, gate_style=None, num_blocks=2,
                            attention_mlp_layers=3)
    out, state = core(torch.randn(6, 5), core.initial_state(6))
    assert out.shape == (6, 24) and state.shape == (6, 3, 8) and core.output_size == 24


def test_stepwise_equals_unrolled():
    torch.manual_seed(1)
    rnn = RelationalMemoryRNN(4, mem_slots=2, head_size=3, num_heads=2, num_layers=2).eval()
    x = torch.randn(3, 7, 4)
    out_all, state_all = rnn(x)
    state = rnn.initial_state(3)
    outs = []
    for t in range(7):
        out_t, state = rnn(x[:, t:t + 1], state)
        outs.append(out_t)
    torch.testing.assert_close(torch.cat(outs, 1), out_all)
    for a, b in zip(state, state_all):
        torch.testing.assert_close(a, b)
    # and the single-step core agrees with layer 0 of the wrapper
    core, s = rnn.cores[0], rnn.cores[0].initial_state(3)
    for t in range(7):
        _, s = core(x[:, t], s)
    torch.testing.assert_close(s, state_all[0])


def test_masked_steps_carry_memory_over():
    torch.manual_seed(2)
    rnn = RelationalMemoryRNN(4, mem_slots=2, head_size=3).eval()
    x = torch.randn(2, 6, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]]).bool()
    out, state = rnn(x, mask=mask)
    _, short_state = rnn(x[:1, :3])
    torch.testing.assert_close(state[0][0], short_state[0][0])
    assert torch.all(out[0, 3:] == 0)


def test_rmc_learns_gradient_flows():
    model = build_model(ModelConfig(input_size=4, cell="rmc", mem_slots=2, head_size=4, num_heads=2))
    model(torch.randn(3, 5, 4)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("kw,msg", [
    (dict(num_blocks=0), "RelationalMemory: num_blocks must be >= 1, got 0."),
    (dict(gate_style="lstm"), "RelationalMemory: gate_style must be one of 'unit', 'memory' or None, got 'lstm'."),
    (dict(attention_mlp_layers=0), "RelationalMemory: attention_mlp_layers must be >= 1, got 0."),
    (dict(mem_slots=0), "RelationalMemory: mem_slots must be a positive integer, got 0."),
    (dict(head_size=2.5), "RelationalMemory: head_size must be a positive integer, got 2.5."),
])
def test_bad_constructor_args(kw, msg):
    args = dict(input_size=3, mem_slots=2, head_size=4)
    args.update(kw)
    with pytest.raises(ValueError) as err:
        RelationalMemory(**args)
    assert str(err.value) == msg


def test_bad_step_input():
    core = RelationalMemory(3, mem_slots=2, head_size=4)
    with pytest.raises(ValueError, match=r"expects \(batch, 3\) input, got \(2, 4\)"):
        core(torch.randn(2, 4), core.initial_state(2))
