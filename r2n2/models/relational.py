"""The pairwise relational module of the slides (slide 2), made fast and mask-correct.

The slide computes, for every query step i,

    r_i = max_j fc2(relu(fc1([h_i; h_j])))

by materialising the (B, T, T, 2H) concatenation. Because fc1 is linear, it splits into
``W_a h_i + W_b h_j + b`` (W_a, W_b the two halves of fc1.weight), so the concatenation is never built:
each h is projected once (O(T·H²)) and only the (queries × keys) sum, relu and fc2 remain. Callers that
need few queries (the last step of a sequence) pay O(T·H²), not O(T²·H²). The all-pairs case runs in
query chunks through one reused workspace, so peak memory is bounded by the chunk size rather than T² (and
the heap does not fragment chunk by chunk). Backward exploits the max: each output unit's gradient reaches
one key only, so it needs no second pairwise matrix product and stores nothing pairwise (see ``_RelateMax``).

Parameter names and shapes (``fc1``: 2H -> H, ``fc2``: H -> H) are the slide's, so a state_dict saved
from the slide's class loads into this one with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["AttentionRelation", "RelationalModule", "max_shares"]


# A single query over at most this many keys per unit of width takes the dense backward (one-query GEMMs).
DENSE_MAX_KEYS_PER_UNIT = 0.75


class _RelateMax(torch.autograd.Function):
    """max over keys of fc2(relu(a_q + c)), in query chunks, with a backward that never touches the
    (B, Q, T, H) pairs.

    Forward computes ``chunk`` queries at a time in one (B, chunk, T, H) workspace (two buffers, allocated
    once per call and reused by every chunk): a fresh pair of large temporaries per chunk, interleaved with
    the small tensors each chunk keeps, fragments glibc's heap, and the process then grows by about one
    workspace per chunk (measured: 1.9 GB retained by one 500-entity training forward whose live tensors
    were under 50 MB). The max routes each output unit h's gradient to a single key j* = argmax, so
    everything backward needs is the pair (q, j*) per unit: ``relu(a_q + c[j*])``, rebuilt from c's rows
    picked by row number (``index_select``, one row copy per unit; a ``gather`` with an index per element was
    6-18x slower at the sentiment and stocks shapes). fc2's weight gradient, the query gradient and a row
    ``index_add_`` into the key gradient then cost
    O(B·Q·H²) instead of O(B·Q·T·H²); only the (B, Q, H) argmax indices are kept from forward. Backward runs
    in the same chunks; with one chunk (Q <= chunk) both passes are the unchunked computation, op for op.
    """

    @staticmethod
    def forward(ctx, a_q, c, key_mask, w2, b2, chunk):
        B, Q, H = a_q.shape
        T, H_out = c.size(1), w2.size(0)
        # Under autocast the activations are bf16/fp16 and fp32 weights are cast to them (as autocast's addmm
        # would); the out= buffers below need one explicit dtype.
        dtype = a_q.dtype
        w2c, b2c = w2.to(dtype), b2.to(dtype)
        q = max(1, min(chunk, Q))
        pre_buf = a_q.new_empty(B * q * T * H)  # the workspace: (B, q, T, H) pairs and their fc2 output
        rel_buf = a_q.new_empty(B * q * T * H_out)
        padded = None if key_mask is None else ~key_mask[:, None, :, None]  # (B, 1, T, 1)
        grad = any(ctx.needs_input_grad)
        out = a_q.new_empty(B, Q, H_out)
        idx = torch.empty(B, Q, H_out, dtype=torch.long, device=a_q.device) if grad else None
        with torch.autocast(a_q.device.type, enabled=False):
            for s in range(0, Q, q):
                n = min(q, Q - s)
                pre = pre_buf[:B * n * T * H].view(B, n, T, H)
                torch.add(a_q[:, s:s + n].unsqueeze(2), c.unsqueeze(1), out=pre).relu_()  # (B, n, 1, H) + (B, 1, T, H)
                rel = rel_buf[:B * n * T * H_out].view(B, n, T, H_out)
                torch.addmm(b2c, pre.view(-1, H), w2c.t(), out=rel.view(-1, H_out))  # fc2 as one 2-D GEMM
                if padded is not None:  # padded keys must never win the max
                    rel.masked_fill_(padded, float("-inf"))
                if not grad:
                    out[:, s:s + n] = rel.amax(dim=2)  # inference: values only, ~10x cheaper than max-with-indices
                    continue
                values, winners = rel.max(dim=2)  # (B, n, T, H) -> (B, n, H), argmax key per output unit
                out[:, s:s + n], idx[:, s:s + n] = values, winners
        del pre_buf, rel_buf
        if grad:
            ctx.save_for_backward(a_q, c, w2, idx, key_mask)
            ctx.chunk = q
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        a_q, c, w2, idx, key_mask = ctx.saved_tensors
        B, Q, H = g.shape
        q = ctx.chunk
        if Q == 1 and c.size(1) <= DENSE_MAX_KEYS_PER_UNIT * c.size(-1):
            return _RelateMax._backward_one_query(ctx, g, a_q, c, w2, idx, key_mask)
        grad_a = a_q.new_empty(a_q.shape) if ctx.needs_input_grad[0] else None
        T, H_in = c.size(1), c.size(-1)
        keys = c.reshape(B * T, H_in)  # every key row, batch by batch
        grad_c = torch.zeros_like(keys)
        first_row = (torch.arange(B, device=c.device) * T).view(B, 1, 1)  # batch b's keys start at row b*T
        grad_w2 = None
        for s in range(0, Q, q):
            n = min(q, Q - s)
            g_s = g[:, s:s + n]  # (B, n, H_out)
            rows = (idx[:, s:s + n] + first_row).reshape(-1)  # (B*n*H_out,): the winning key's row per unit
            picked = torch.add(a_q[:, s:s + n].unsqueeze(2),
                               keys.index_select(0, rows).view(B, n, H, H_in)).relu_()  # (B, n, H_out, H_in)
            # Under autocast the activations (a_q, c, g) are bf16/fp16 while w2 stays fp32: every gradient is
            # computed in the promoted dtype and returned in its own input's dtype.
            if ctx.needs_input_grad[3]:
                part = torch.einsum("bqh,bqhk->hk", g_s, picked.to(g.dtype)).to(w2.dtype)
                grad_w2 = part if grad_w2 is None else grad_w2.add_(part)
            relu_grad = picked.sign_()  # 1 where the pair's relu passed, else 0 (picked >= 0), in place: no copy
            contrib = (g_s.unsqueeze(-1) * w2).mul_(relu_grad)  # (B, n, H_out, H_in): d pre at (q, j*), relu'd
            if grad_a is not None:
                grad_a[:, s:s + n] = contrib.sum(2)  # (B, n, H_in)
            grad_c.index_add_(0, rows, contrib.view(-1, H_in).to(c.dtype))  # rows of (B*T, H_in)
        grad_b2 = g.sum((0, 1)).to(w2.dtype) if ctx.needs_input_grad[4] else None
        return grad_a, grad_c.view(c.shape), None, grad_w2, grad_b2, None


    @staticmethod
    def _backward_one_query(ctx, g, a_q, c, w2, idx, key_mask):
        """One query (a sequence's last step) over few keys: the gradient as two dense (B·T, H) x (H, H) GEMMs
        over the rebuilt pairs instead of the per-unit path's (B, H_out, H_in) element-wise work. The (B, T, H_out)
        gradient of the pair outputs is ``g`` at each unit's winning key and zero elsewhere; fc2's weight
        gradient is its product with the pairs, the pairs' gradient its product with fc2's weight through the
        relu. O(B·T·H²) in GEMMs against O(B·H²) element-wise: faster while T is under about 0.75 H (sentiment:
        T <= 64 tokens, H = 256 units: 27.7 -> 6.2 ms; at T = 0.94 H the per-unit path is 7 % faster)."""
        dtype = g.dtype
        B, T, H_in = c.shape
        H_out = g.size(-1)
        pre = torch.add(a_q, c).relu_().to(dtype)  # (B, T, H_in): the pairs of forward, (B, 1, H) + (B, T, H)
        if key_mask is not None:  # padded keys get no gradient; zero them so an inf there cannot make 0 * inf
            pre.masked_fill_(~key_mask.unsqueeze(-1), 0.0)
        at_winner = g.new_zeros(B, T, H_out).scatter_(1, idx.view(B, 1, H_out), g.view(B, 1, H_out))
        flat = at_winner.view(B * T, H_out)
        grad_w2 = (flat.t() @ pre.view(B * T, H_in)).to(w2.dtype) if ctx.needs_input_grad[3] else None
        grad_pre = torch.ops.aten.threshold_backward(flat @ w2.to(dtype), pre.view(B * T, H_in), 0)  # relu'
        grad_pre = grad_pre.view(B, T, H_in)
        grad_a = grad_pre.sum(1, keepdim=True).to(a_q.dtype) if ctx.needs_input_grad[0] else None  # (B, 1, H_in)
        grad_b2 = g.sum((0, 1)).to(w2.dtype) if ctx.needs_input_grad[4] else None
        return grad_a, grad_pre.to(c.dtype), None, grad_w2, grad_b2, None


def max_shares(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, D) -> (B, T): for each step, the share of the D units whose max over the (unpadded) steps is
    attained there; sums to 1 per row, padded steps get 0."""
    if mask is not None:
        values = values.masked_fill(~mask.bool().unsqueeze(-1), float("-inf"))
    winners = values.argmax(dim=1)  # (B, D): step of each unit's max
    return torch.nn.functional.one_hot(winners, values.size(1)).to(values.dtype).mean(1)  # (B, D, T) -> (B, T)


def _relate(a_q, c, key_mask, w2, b2, chunk: int | None = None):
    """(B, Q, H) queries (fc1 bias included) x (B, T, H) keys -> (B, Q, H), ``chunk`` queries at a time
    (None: all at once)."""
    return _RelateMax.apply(a_q, c, key_mask, w2, b2, a_q.size(1) if chunk is None else chunk)


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
        rel = _relate(a, c, mask, self.fc2.weight, self.fc2.bias, chunk)  # (B, T, H), in query chunks
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



class AttentionRelation(nn.MultiheadAttention):
    """``relation: attention``: each step (or entity) reads the others, itself included, by multi-head attention,
    added to its own state: ``h + MHA(h, h, h)``. Padded keys are ignored; with ``query`` (B,) only those rows
    are computed, (B, D). Parameter names are ``nn.MultiheadAttention``'s, as in checkpoints written before the
    relation became a plug-in."""

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None,  # type: ignore[override]
                query: torch.Tensor | None = None) -> torch.Tensor:
        pad = None if mask is None else ~mask  # (B, T): True where a key is padding
        if query is None:
            return h + super().forward(h, h, h, key_padding_mask=pad, need_weights=False)[0]  # (B, T, D)
        q = h[torch.arange(h.size(0), device=h.device), query].unsqueeze(1)  # (B, 1, D)
        return (q + super().forward(q, h, h, key_padding_mask=pad, need_weights=False)[0]).squeeze(1)  # (B, D)
