"""The pairwise relational module of the slides (slide 2), made fast and mask-correct.

The slide computes, for every query step i,

    r_i = max_j fc2(relu(fc1([h_i; h_j])))

by materialising the (B, T, T, 2H) concatenation. Because fc1 is linear, it splits into
``W_a h_i + W_b h_j + b`` (W_a, W_b the two halves of fc1.weight), so the concatenation is never built:
each h is projected once (O(T·H²)) and only the (queries × keys) sum, relu and fc2 remain. Callers that
need few queries (the last step of a sequence) pay O(T·H²), not O(T²·H²). The all-pairs case runs in
query chunks, each under activation checkpointing during training, so peak memory is bounded by the
chunk size rather than T².

Parameter names and shapes (``fc1``: 2H -> H, ``fc2``: H -> H) are the slide's, so a state_dict saved
from the slide's class loads into this one with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

__all__ = ["RelationalModule"]


def _relate(a_q: torch.Tensor, c: torch.Tensor, key_mask: torch.Tensor | None,
            fc2_weight: torch.Tensor, fc2_bias: torch.Tensor) -> torch.Tensor:
    """max over keys of fc2(relu(a_q + c)); a_q (B, Q, H) already holds fc1's bias.

    c is (B, T, H); key_mask (B, T) is True on real steps. Returns (B, Q, H).
    """
    pre = torch.relu(a_q.unsqueeze(2) + c.unsqueeze(1))  # (B, Q, 1, H) + (B, 1, T, H) -> (B, Q, T, H)
    rel = torch.nn.functional.linear(pre, fc2_weight, fc2_bias)  # (B, Q, T, H)
    if key_mask is not None:
        # Padded keys must never win the max: push them to -inf.
        rel = rel.masked_fill(~key_mask[:, None, :, None], float("-inf"))  # (B, 1, T, 1) broadcast
    return rel.amax(dim=2)  # (B, Q, T, H) -> (B, Q, H)


class RelationalModule(nn.Module):
    """Pairwise relational reasoning over a sequence of hidden states (slide 2).

    Args:
        hidden_size: width H of the states it relates.
        chunk_size: queries computed at once in the all-pairs case; bounds peak memory at
            about ``B * chunk_size * T * H`` floats per live tensor.
        checkpoint_chunks: recompute each chunk in backward instead of storing its (B, q, T, H)
            activations; trades about one extra forward for a T-fold smaller training footprint.
    """

    def __init__(self, hidden_size: int, *, chunk_size: int = 32, checkpoint_chunks: bool = True):
        super().__init__()
        if hidden_size < 1:
            raise ValueError(f"RelationalModule: hidden_size must be >= 1, got {hidden_size}.")
        if chunk_size < 1:
            raise ValueError(f"RelationalModule: chunk_size must be >= 1, got {chunk_size}.")
        self.hidden_size = hidden_size
        self.chunk_size = chunk_size
        self.checkpoint_chunks = checkpoint_chunks
        self.fc1 = nn.Linear(hidden_size * 2, hidden_size)
        self.fc2 = nn.Linear(hidden_size, hidden_size)

    def _project(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split fc1 into its query half (with bias) and key half. Returns (W_a h + b, W_b h)."""
        H = self.hidden_size
        w_a, w_b = self.fc1.weight[:, :H], self.fc1.weight[:, H:]  # (H, 2H) -> 2 x (H, H)
        return torch.nn.functional.linear(h, w_a, self.fc1.bias), torch.nn.functional.linear(h, w_b)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None, *,
                query: torch.Tensor | None = None) -> torch.Tensor:
        """Relate queries to every (unpadded) step of ``h``.

        Args:
            h: (B, T, H) hidden states.
            mask: optional (B, T) bool, True on real steps, False on padding.
            query: optional (B,) long tensor of the one step per row to compute. When given, only
                that row's relation is computed and the result is (B, H).

        Returns:
            (B, T, H) relations for every step (padded query steps are zero), or (B, H) with ``query``.
        """
        if h.dim() != 3 or h.size(-1) != self.hidden_size:
            raise ValueError(
                f"RelationalModule expects (batch, steps, {self.hidden_size}) input, got {tuple(h.shape)}.")
        if mask is not None and mask.shape != h.shape[:2]:
            raise ValueError(f"RelationalModule: mask shape {tuple(mask.shape)} != {tuple(h.shape[:2])}.")
        if mask is not None:
            mask = mask.bool()
        B, T, H = h.shape
        if query is not None:
            h_q = h[torch.arange(B, device=h.device), query]  # (B, T, H) -> (B, H)
            a_q = torch.nn.functional.linear(h_q, self.fc1.weight[:, :H], self.fc1.bias)  # (B, H)
            c = torch.nn.functional.linear(h, self.fc1.weight[:, H:])  # (B, T, H)
            return _relate(a_q.unsqueeze(1), c, mask, self.fc2.weight, self.fc2.bias).squeeze(1)

        a, c = self._project(h)  # 2 x (B, T, H)
        outs = []
        needs_grad = h.requires_grad or self.fc2.weight.requires_grad or self.fc1.weight.requires_grad
        use_ckpt = self.checkpoint_chunks and torch.is_grad_enabled() and needs_grad
        for start in range(0, T, self.chunk_size):
            a_q = a[:, start:start + self.chunk_size]  # (B, q, H)
            if use_ckpt:
                out = checkpoint(_relate, a_q, c, mask, self.fc2.weight, self.fc2.bias, use_reentrant=False)
            else:
                out = _relate(a_q, c, mask, self.fc2.weight, self.fc2.bias)
            outs.append(out)
        rel = torch.cat(outs, dim=1)  # (B, T, H)
        if mask is not None:
            rel = rel.masked_fill(~mask.unsqueeze(-1), 0.0)  # padded queries are ignored: zero, never -inf
        return rel
