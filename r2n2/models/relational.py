"""The pairwise relational module of the slides (slide 2), made fast and mask-correct.

The slide computes, for every query step i,

    r_i = max_j fc2(relu(fc1([h_i; h_j])))

by materialising the (B, T, T, 2H) concatenation. Because fc1 is linear, it splits into
``W_a h_i + W_b h_j + b`` (W_a, W_b the two halves of fc1.weight), so the concatenation is never built:
each h is projected once (O(T·H²)) and only the (queries × keys) sum, relu and fc2 remain. Callers that
need few queries (the last step of a sequence) pay O(T·H²), not O(T²·H²). The all-pairs case runs in
query chunks, so peak memory is bounded by the chunk size rather than T². Backward exploits the max: each
output unit's gradient reaches one key only, so it needs no second pairwise matrix product and stores
nothing pairwise (see ``_RelateMax``).

Parameter names and shapes (``fc1``: 2H -> H, ``fc2``: H -> H) are the slide's, so a state_dict saved
from the slide's class loads into this one with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["RelationalModule", "max_shares"]


class _RelateMax(torch.autograd.Function):
    """max over keys of fc2(relu(a_q + c)), with a backward that never touches the (B, Q, T, H) pairs.

    The max routes each output unit h's gradient to a single key j* = argmax, so everything backward
    needs is the pair (q, j*) per unit: ``relu(a_q + c[j*])``, rebuilt from a gather of c's rows. fc2's
    weight gradient, the query gradient and a scatter-add into the key gradient then cost O(B·Q·H²)
    instead of O(B·Q·T·H²); only the (B, Q, H) argmax indices are kept from forward.
    """

    @staticmethod
    def forward(ctx, a_q, c, key_mask, w2, b2):
        B, Q, H = a_q.shape
        T = c.size(1)
        pre = torch.add(a_q.unsqueeze(2), c.unsqueeze(1)).relu_()  # (B, Q, 1, H) + (B, 1, T, H) -> (B, Q, T, H)
        rel = torch.addmm(b2, pre.view(-1, H), w2.t()).view(B, Q, T, -1)  # fc2 as one 2-D GEMM, no copy
        del pre
        if key_mask is not None:  # padded keys must never win the max
            rel.masked_fill_(~key_mask[:, None, :, None], float("-inf"))
        if not any(ctx.needs_input_grad):
            return rel.amax(dim=2)  # inference: values only, ~10x cheaper than max-with-indices on CPU
        out, idx = rel.max(dim=2)  # (B, Q, T, H) -> (B, Q, H), argmax key per output unit
        ctx.save_for_backward(a_q, c, w2, idx)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        a_q, c, w2, idx = ctx.saved_tensors
        B, Q, H = g.shape
        rows = idx.reshape(B, Q * H, 1).expand(B, Q * H, c.size(-1))  # (B, Q*H, H): key row of each unit
        picked = torch.add(a_q.unsqueeze(2), c.gather(1, rows).view(B, Q, H, -1)).relu_()  # (B, Q, H_out, H_in)
        # Under autocast the activations (a_q, c, g) are bf16/fp16 while w2 stays fp32: every gradient is
        # computed in the promoted dtype and returned in its own input's dtype.
        grad_w2 = (torch.einsum("bqh,bqhk->hk", g, picked.to(g.dtype)).to(w2.dtype)
                   if ctx.needs_input_grad[3] else None)
        grad_b2 = g.sum((0, 1)).to(w2.dtype) if ctx.needs_input_grad[4] else None
        contrib = (g.unsqueeze(-1) * w2).mul_(picked > 0)  # (B, Q, H_out, H_in): d pre at (q, j*), relu'd
        grad_a = contrib.sum(2).to(a_q.dtype)  # (B, Q, H_in)
        grad_c = torch.zeros_like(c).scatter_add_(1, rows, contrib.view(B, Q * H, -1).to(c.dtype))  # (B, T, H_in)
        return grad_a, grad_c, None, grad_w2, grad_b2


def max_shares(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, D) -> (B, T): for each step, the share of the D units whose max over the (unpadded) steps is
    attained there; sums to 1 per row, padded steps get 0."""
    if mask is not None:
        values = values.masked_fill(~mask.bool().unsqueeze(-1), float("-inf"))
    winners = values.argmax(dim=1)  # (B, D): step of each unit's max
    return torch.nn.functional.one_hot(winners, values.size(1)).to(values.dtype).mean(1)  # (B, D, T) -> (B, T)


def _relate(a_q, c, key_mask, w2, b2):
    """(B, Q, H) queries (fc1 bias included) x (B, T, H) keys -> (B, Q, H)."""
    return _RelateMax.apply(a_q, c, key_mask, w2, b2)


def _auto_chunk(batch: int, steps: int, width: int, budget: int = 1 << 22) -> int:
    """Queries per chunk so one (B, q, T, H) tensor holds about ``budget`` floats (16 MB in fp32)."""
    return max(1, budget // max(1, batch * steps * width))


class RelationalModule(nn.Module):
    """Pairwise relational reasoning over a sequence of hidden states (slide 2).

    Args:
        hidden_size: width H of the states it relates.
        chunk_size: queries computed at once in the all-pairs case (0 = automatic: about 4M floats per
            (B, q, T, H) tensor); bounds peak memory, forward and backward alike.
    """

    def __init__(self, hidden_size: int, *, chunk_size: int = 0):
        super().__init__()
        if hidden_size < 1:
            raise ValueError(f"RelationalModule: hidden_size must be >= 1, got {hidden_size}.")
        if chunk_size < 0:
            raise ValueError(f"RelationalModule: chunk_size must be >= 0 (0 = automatic), got {chunk_size}.")
        self.hidden_size = hidden_size
        self.chunk_size = chunk_size
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
        chunk = self.chunk_size or _auto_chunk(B, T, H)
        outs = [_relate(a[:, s:s + chunk], c, mask, self.fc2.weight, self.fc2.bias)  # (B, q, H) each
                for s in range(0, T, chunk)]
        rel = torch.cat(outs, dim=1)  # (B, T, H)
        if mask is not None:
            rel = rel.masked_fill(~mask.unsqueeze(-1), 0.0)  # padded queries are ignored: zero, never -inf
        return rel

    @torch.no_grad()
    def key_shares(self, h: torch.Tensor, mask: torch.Tensor | None = None, *,
                   query: torch.Tensor) -> torch.Tensor:
        """Where the relations of each row's ``query`` step come from: (B, T), the share of the H output
        units whose max is attained at each key step (sums to 1 per row; padded steps get 0)."""
        B, T, H = h.shape
        h_q = h[torch.arange(B, device=h.device), query]  # (B, H)
        a_q = torch.nn.functional.linear(h_q, self.fc1.weight[:, :H], self.fc1.bias).unsqueeze(1)  # (B, 1, H)
        c = torch.nn.functional.linear(h, self.fc1.weight[:, H:])  # (B, T, H)
        rel = torch.nn.functional.linear(torch.relu(a_q.unsqueeze(2) + c.unsqueeze(1)), self.fc2.weight,
                                         self.fc2.bias)[:, 0]  # (B, T, H)
        return max_shares(rel, mask)

