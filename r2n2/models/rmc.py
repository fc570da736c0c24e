"""Relational Memory Core (Santoro et al. 2018, "Relational recurrent neural networks", arXiv 1806.01822).

The memory is a matrix of ``mem_slots`` rows, each ``num_heads * head_size`` wide. At each step the input
is projected to one extra row, appended to the memory, and ``num_blocks`` of multi-head dot-product
attention (each followed by a row-wise MLP, both with residual + LayerNorm, paper Fig. 2 / Sec. 3.2)
update the memory rows. LSTM-style input and forget gates (paper eq. 6-8), computed from the projected
input and tanh(previous memory), mix the attended memory into the previous one.

``RelationalMemory`` is the single-step core with explicit state; ``RelationalMemoryRNN`` unrolls it over
a sequence and returns ``(output, state)`` like ``nn.RNN``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["RelationalMemory", "RelationalMemoryRNN"]

_GATE_STYLES = ("unit", "memory", None)


class _AttentionBlock(nn.Module):
    """One multi-head attention over memory rows, residual + LayerNorm (Vaswani et al. 2017)."""

    def __init__(self, mem_size: int, num_heads: int, head_size: int, key_size: int):
        super().__init__()
        self.num_heads, self.head_size, self.key_size = num_heads, head_size, key_size
        qkv_size = 2 * key_size + head_size
        self.qkv = nn.Linear(mem_size, qkv_size * num_heads)
        self.qkv_norm = nn.LayerNorm(qkv_size * num_heads)
        self.norm = nn.LayerNorm(mem_size)

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        B, N, _ = memory.shape
        qkv = self.qkv_norm(self.qkv(memory))  # (B, N, M) -> (B, N, heads * (2K + V))
        qkv = qkv.view(B, N, self.num_heads, -1).transpose(1, 2)  # -> (B, heads, N, 2K + V)
        q, k, v = qkv.split([self.key_size, self.key_size, self.head_size], dim=-1)
        weights = torch.softmax((q * self.key_size ** -0.5) @ k.transpose(-1, -2), dim=-1)  # (B, heads, N, N)
        attended = (weights @ v).transpose(1, 2).reshape(B, N, -1)  # (B, heads, N, V) -> (B, N, heads * V)
        return self.norm(memory + attended)


class RelationalMemory(nn.Module):
    """One step of the Relational Memory Core, with explicit state.

    Args:
        input_size: features of one step's input.
        mem_slots: number of memory rows.
        head_size: width of one attention head; a row is ``head_size * num_heads`` wide.
        num_heads: attention heads.
        num_blocks: attention + MLP blocks per step (the MLP's weights are shared across blocks,
            as in DeepMind's reference; each block has its own attention and norms).
        forget_bias, input_bias: constants added to the gate pre-activations (1.0 and 0.0 by default, so
            memory starts out leaning towards remembering).
        gate_style: ``"unit"`` (a gate per memory element), ``"memory"`` (one per row) or ``None``.
        attention_mlp_layers: depth of the row-wise MLP after attention (ReLU between layers).
        key_size: width of queries and keys; defaults to ``head_size``.
    """

    def __init__(self, input_size: int, mem_slots: int, head_size: int, num_heads: int = 1, *,
                 num_blocks: int = 1, forget_bias: float = 1.0, input_bias: float = 0.0,
                 gate_style: str | None = "unit", attention_mlp_layers: int = 2, key_size: int | None = None):
        super().__init__()
        for name, value in (("input_size", input_size), ("mem_slots", mem_slots), ("head_size", head_size),
                            ("num_heads", num_heads)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"RelationalMemory: {name} must be a positive integer, got {value!r}.")
        if num_blocks < 1:
            raise ValueError(f"RelationalMemory: num_blocks must be >= 1, got {num_blocks}.")
        if gate_style not in _GATE_STYLES:
            raise ValueError(f"RelationalMemory: gate_style must be one of 'unit', 'memory' or None, "
                             f"got {gate_style!r}.")
        if attention_mlp_layers < 1:
            raise ValueError(f"RelationalMemory: attention_mlp_layers must be >= 1, got {attention_mlp_layers}.")
        if key_size is not None and key_size < 1:
            raise ValueError(f"RelationalMemory: key_size must be >= 1 or None, got {key_size}.")
        self.input_size, self.mem_slots, self.head_size, self.num_heads = input_size, mem_slots, head_size, num_heads
        self.mem_size = head_size * num_heads
        self.forget_bias, self.input_bias, self.gate_style = forget_bias, input_bias, gate_style
        key_size = key_size or head_size

        self.input_projection = nn.Linear(input_size, self.mem_size)
        self.blocks = nn.ModuleList(
            _AttentionBlock(self.mem_size, num_heads, head_size, key_size) for _ in range(num_blocks))
        layers: list[nn.Module] = []
        for i in range(attention_mlp_layers):
            layers.append(nn.Linear(self.mem_size, self.mem_size))
            if i < attention_mlp_layers - 1:
                layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)
        self.mlp_norms = nn.ModuleList(nn.LayerNorm(self.mem_size) for _ in range(num_blocks))
        gate_size = {"unit": self.mem_size, "memory": 1, None: 0}[gate_style]
        if gate_size:
            self.gate_input = nn.Linear(self.mem_size, 2 * gate_size)
            self.gate_memory = nn.Linear(self.mem_size, 2 * gate_size)

    @property
    def output_size(self) -> int:
        return self.mem_slots * self.mem_size

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> torch.Tensor:
        """Identity memory, zero-padded or truncated to (batch, mem_slots, mem_size): each row distinct."""
        eye = torch.eye(self.mem_slots, device=device, dtype=dtype)  # (S, S)
        if self.mem_size > self.mem_slots:
            eye = torch.nn.functional.pad(eye, (0, self.mem_size - self.mem_slots))  # -> (S, M)
        else:
            eye = eye[:, :self.mem_size]  # -> (S, M)
        return eye.unsqueeze(0).expand(batch_size, -1, -1).clone()  # (B, S, M)

    def _attend(self, memory: torch.Tensor) -> torch.Tensor:
        for block, norm in zip(self.blocks, self.mlp_norms):
            memory = block(memory)
            memory = norm(self.mlp(memory) + memory)
        return memory

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step. x: (B, input_size); state: (B, S, M). Returns (output (B, S*M), new state (B, S, M))."""
        if x.dim() != 2 or x.size(1) != self.input_size:
            raise ValueError(f"RelationalMemory expects (batch, {self.input_size}) input, got {tuple(x.shape)}.")
        inp = self.input_projection(x).unsqueeze(1)  # (B, F) -> (B, 1, M)
        attended = self._attend(torch.cat([state, inp], dim=1))[:, :-1]  # (B, S+1, M) -> (B, S, M)
        if self.gate_style is not None:
            gates = self.gate_memory(torch.tanh(state)) + self.gate_input(inp)  # (B, S, 2G) + (B, 1, 2G)
            input_gate, forget_gate = gates.chunk(2, dim=-1)
            input_gate = torch.sigmoid(input_gate + self.input_bias)
            forget_gate = torch.sigmoid(forget_gate + self.forget_bias)
            new_state = input_gate * torch.tanh(attended) + forget_gate * state  # paper eq. 8
        else:
            new_state = attended
        return new_state.flatten(1), new_state  # (B, S, M) -> (B, S*M)


class RelationalMemoryRNN(nn.Module):
    """A (stack of) Relational Memory Core(s) unrolled over time, with an ``nn.RNN``-like interface.

    ``forward(x, state=None, mask=None)`` takes (B, T, F) input and returns ``(output, state)``: output is
    (B, T, mem_slots * mem_size) from the top layer, state the list of final memories, one per layer. Where
    ``mask`` (B, T) is False (padding) the memory is carried over unchanged and the output is zero, so a
    padded sequence ends in exactly the state of the unpadded one.
    """

    def __init__(self, input_size: int, mem_slots: int, head_size: int, num_heads: int = 1, *,
                 num_layers: int = 1, dropout: float = 0.0, **core_kwargs):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"RelationalMemoryRNN: num_layers must be >= 1, got {num_layers}.")
        cores = []
        for i in range(num_layers):
            cores.append(RelationalMemory(input_size, mem_slots, head_size, num_heads, **core_kwargs))
            input_size = cores[-1].output_size
        self.cores = nn.ModuleList(cores)
        self.dropout = nn.Dropout(dropout)

    @property
    def output_size(self) -> int:
        return self.cores[-1].output_size

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> list[torch.Tensor]:
        return [core.initial_state(batch_size, device=device, dtype=dtype) for core in self.cores]

    def forward(self, x: torch.Tensor, state: list[torch.Tensor] | None = None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        B, T, _ = x.shape
        if state is None:
            state = self.initial_state(B, device=x.device, dtype=x.dtype)
        state = list(state)
        outputs = []
        for t in range(T):
            inp = x[:, t]
            keep = None if mask is None else mask[:, t].view(B, 1, 1)  # (B,) -> (B, 1, 1)
            for layer, core in enumerate(self.cores):
                out, new = core(inp, state[layer])
                if keep is not None:
                    new = torch.where(keep, new, state[layer])
                    out = out * keep.view(B, 1).to(out.dtype)
                state[layer] = new
                inp = self.dropout(out) if layer < len(self.cores) - 1 else out
            outputs.append(inp)
        return torch.stack(outputs, dim=1), state  # T x (B, S*M) -> (B, T, S*M)
