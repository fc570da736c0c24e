"""One configurable relational recurrent network behind every slide class.

Pipeline: [embedding] -> recurrence (rnn | gru | lstm | rmc) -> [relational module] -> pooling -> head.
Variable-length batches are right-padded and described by ``lengths`` (B,) or ``mask`` (B, T); padding
never changes a sequence's output: recurrences run packed (or carry state over pads, for rmc), the
relational module ignores padded keys and queries, and pooling ignores padded steps.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn

from .config import CUSTOM_CELLS, CUSTOM_RELATIONS, ModelConfig
from .distribution import distribution_transform, init_head_bias, point_of
from .relational import AttentionRelation, RelationalModule, max_shares
from .rmc import RelationalMemoryRNN

__all__ = ["RelationalRNN", "build_model", "lengths_to_mask"]


def lengths_to_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool mask, True on the first ``length`` steps."""
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (batch,), got shape {tuple(lengths.shape)}.")
    if len(lengths) and (int(lengths.min()) < 1 or int(lengths.max()) > steps):
        raise ValueError(f"lengths must lie in [1, {steps}] (the padded length), got min {int(lengths.min())}, "
                         f"max {int(lengths.max())}.")
    return torch.arange(steps, device=lengths.device) < lengths.unsqueeze(1)  # (T,) < (B, 1) -> (B, T)


def _make_encoder(cfg: ModelConfig, input_size: int) -> nn.Module:
    if cfg.cell in CUSTOM_CELLS:
        return CUSTOM_CELLS[cfg.cell](cfg, input_size)
    if cfg.cell == "rmc":
        return RelationalMemoryRNN(
            input_size, cfg.mem_slots, cfg.head_size, cfg.num_heads, num_layers=cfg.num_layers,
            dropout=cfg.dropout, num_blocks=cfg.num_blocks, gate_style=cfg.gate_style,
            attention_mlp_layers=cfg.attention_mlp_layers, forget_bias=cfg.forget_bias, input_bias=cfg.input_bias)
    rnn_cls = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cfg.cell]
    return rnn_cls(input_size, cfg.hidden_size, cfg.num_layers, batch_first=True,
                   bidirectional=cfg.bidirectional, dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)


def _make_relation(cfg: ModelConfig, width: int) -> nn.Module:
    """The relational module ``cfg.relation`` names (see ``r2n2.models.config.CUSTOM_RELATIONS``)."""
    if cfg.relation in CUSTOM_RELATIONS:
        return CUSTOM_RELATIONS[cfg.relation](cfg, width)
    if cfg.relation == "attention":
        return AttentionRelation(width, cfg.num_heads, batch_first=True)
    return RelationalModule(width, chunk_size=cfg.relational_chunk)


class RelationalRNN(nn.Module):
    """The configurable core model (see ``ModelConfig``); every slide class is a preset of it.

    Submodule names follow the slides (``embedding``, ``rnn``/``gru``/``birnn``, ``relational``,
    ``attention``, ``fc``), so state_dicts move between the slide code and this library unchanged.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        cfg = config
        if cfg.vocab_size is not None:
            self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_size)
        in_size = cfg.embed_size if cfg.vocab_size is not None else cfg.input_size
        encoder = _make_encoder(cfg, in_size)
        self.add_module(cfg.encoder_name, encoder)
        width = getattr(encoder, "output_size", None) if cfg.cell in CUSTOM_CELLS else cfg.encoder_size
        if not isinstance(width, int):
            raise ValueError(f"custom cell {cfg.cell!r} must expose an integer output_size attribute.")
        if cfg.relational:
            self.relational = _make_relation(cfg, width)
        if cfg.identity and cfg.num_entities:
            self.identity = nn.Embedding(cfg.num_entities, width)
            nn.init.normal_(self.identity.weight, std=0.5)  # large enough to break the symmetry of the stocks early
        if cfg.entity_mixing and cfg.num_entities:  # M from 0: the path starts closed and opens where it helps
            self.mixing = nn.Parameter(torch.zeros(cfg.num_entities, cfg.num_entities))
            self.mixing_value = nn.Linear(cfg.input_size, width, bias=False)  # from each entity's newest features
        if cfg.pooling == "attention":
            self.attention = nn.Linear(width, 1)
        self.dropout = nn.Dropout(cfg.dropout)
        # a distribution head has head_params outputs per target (quantile levels or Student-t parameters)
        self.fc = nn.Linear(width * (3 if cfg.pooling == "concat" else 1), cfg.output_size * cfg.head_params)
        if cfg.distribution != "none":
            init_head_bias(self.fc.bias, cfg)

    # -- parts -------------------------------------------------------------------------------------
    @property
    def encoder(self) -> nn.Module:
        return getattr(self, self.config.encoder_name)

    def encode(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-step recurrent states: (B, T, F) or token ids (B, T) -> (B, T, encoder_size)."""
        if self.config.vocab_size is not None:
            if x.dtype not in (torch.int32, torch.int64):
                raise ValueError(f"token-id input must be an integer tensor, got {x.dtype}.")
            x = self.dropout(self.embedding(x))  # (B, T) -> (B, T, E); dropout regularises the embedding
        elif x.dim() != 3 or x.size(-1) != self.config.input_size:
            raise ValueError(f"expected input of shape (batch, steps, {self.config.input_size}), "
                             f"got {tuple(x.shape)}.")
        if self.config.cell not in ("rnn", "gru", "lstm"):  # rmc and plug-in cells take the mask themselves
            out, _ = self.encoder(x, mask=mask)
            return out
        if mask is None or bool(mask.all()):
            out, _ = self.encoder(x)
            return out
        lengths = mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.encoder(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return out  # (B, T, D), zeros at padded steps

    def pool(self, h: torch.Tensor, mask: torch.Tensor | None,
             relational: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, D) states -> (B, D) summary (+ (B, T, 1) attention weights for attention pooling)."""
        B, T, _ = h.shape
        pooling = self.config.pooling
        if pooling == "concat":  # [last step (relational), max over steps, mean over steps] (ULMFiT-style)
            last, _ = self._pool_as("last", h, mask, relational)
            return torch.cat([last, self._pool_as("max", h, mask, False)[0],
                              self._pool_as("mean", h, mask, False)[0]], dim=-1), None  # (B, 3D)
        return self._pool_as(pooling, h, mask, relational)

    def _pool_as(self, pooling: str, h: torch.Tensor, mask: torch.Tensor | None,
                 relational: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, _ = h.shape
        if pooling == "last":
            last = (mask.sum(1) - 1) if mask is not None else torch.full((B,), T - 1, device=h.device)
            if relational:  # only the last step's relations are needed: O(T·D²), not O(T²·D²)
                return self.relational(h, mask, query=last), None
            return h[torch.arange(B, device=h.device), last], None  # (B, T, D) -> (B, D)
        if relational:
            h = self.relational(h, mask)  # (B, T, D), all pairs, chunked
        if pooling == "mean":
            if mask is None:
                return h.mean(1), None
            m = mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
            return (h * m).sum(1) / m.sum(1), None
        if pooling == "max":  # per unit, the largest value over the real steps
            if mask is not None:
                h = h.masked_fill(~mask.unsqueeze(-1), float("-inf"))
            return h.amax(1), None  # (B, T, D) -> (B, D)
        scores = self.attention(h)  # (B, T, 1)
        if mask is not None:
            scores = scores.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        weights = torch.softmax(scores, dim=1)  # over time
        return (weights * h).sum(1), weights  # (B, T, 1) * (B, T, D) -> (B, D)

    def _mask(self, x: torch.Tensor, lengths, mask, steps: int) -> torch.Tensor | None:
        if lengths is not None and mask is not None:
            raise ValueError("pass either lengths or mask, not both.")
        if lengths is not None:
            return lengths_to_mask(torch.as_tensor(lengths, device=x.device), steps)
        if mask is None:
            return None
        mask = mask.to(device=x.device, dtype=torch.bool)
        if mask.shape != x.shape[:mask.dim()] or mask.size(-1) != steps:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match the input's leading dimensions "
                             f"{tuple(x.shape[:mask.dim()])}.")
        flat = mask.reshape(-1, steps)
        if not torch.equal(flat, lengths_to_mask(flat.sum(1), steps)):
            raise ValueError("mask must be right-padded: True on a prefix of each sequence, at least one step.")
        return mask

    # -- forward -----------------------------------------------------------------------------------
    def _head(self, z: torch.Tensor, distribution: bool) -> torch.Tensor:
        """(..., D) pooled states -> (..., out) point forecast, or with ``distribution`` (..., out, P)."""
        raw = self.fc(self.dropout(z))
        cfg = self.config
        if cfg.distribution == "none":
            if distribution:
                raise ValueError("this model has no distribution head (model.distribution is 'none').")
            return raw
        dist = distribution_transform(raw.unflatten(-1, (cfg.output_size, cfg.head_params)), cfg)  # (..., out, P)
        return dist if distribution else point_of(dist, cfg)

    def forward_with_attention(self, x: torch.Tensor, lengths: torch.Tensor | None = None, *,
                               mask: torch.Tensor | None = None,
                               distribution: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Like ``forward`` but also returns the attention-pooling weights (None for other poolings)."""
        cfg = self.config
        if cfg.entities:
            if x.dim() != 4:
                raise ValueError(f"multi-entity input must be (batch, entities, steps, features), "
                                 f"got {tuple(x.shape)}.")
            B, E, T, F = x.shape
            mask = self._mask(x, None, mask, T)  # (B, E, T) or None
            flat_mask = None if mask is None else mask.reshape(B * E, T)
            h = self.encode(x.reshape(B * E, T, F), flat_mask)  # (B*E, T, D)
            z, weights = self.pool(h, flat_mask, relational=False)  # (B*E, D)
            z = z.view(B, E, -1)  # (B*E, D) -> (B, E, D)
            if cfg.num_entities and E != cfg.num_entities:
                how = "by identity" if cfg.identity else "by position (entity_mixing)"
                raise ValueError(f"the model knows {cfg.num_entities} entities {how}, got input with {E}.")
            if cfg.identity and cfg.num_entities:
                z = z + self.identity.weight  # (B, E, D) + (E, D): who is who, learned
            if cfg.relational:
                z = self.relational(z)  # every entity related to every other (the entities as one sequence): (B, E, D)
            if cfg.entity_mixing and cfg.num_entities:  # each entity plus a linear map of the others' newest features
                last = (mask.sum(-1) - 1) if mask is not None else torch.full((B, E), T - 1, device=x.device)
                newest = x[torch.arange(B, device=x.device)[:, None], torch.arange(E, device=x.device), last]  # (B, E, F)
                others = self.mixing * (1 - torch.eye(E, device=z.device, dtype=z.dtype))  # (E, E), no self-loop
                z = z + torch.einsum("ij,bjd->bid", others, self.mixing_value(newest))  # (B, E, D)
            if weights is not None:
                weights = weights.view(B, E, T, 1)
            return self._head(z, distribution), weights  # (B, E, out) [(B, E, out, P)]
        steps = x.size(1)
        mask = self._mask(x, lengths, mask, steps)
        h = self.encode(x, mask)
        z, weights = self.pool(h, mask, relational=cfg.relational)
        return self._head(z, distribution), weights

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, *,
                mask: torch.Tensor | None = None, distribution: bool = False) -> torch.Tensor:
        """(B, T, F) features or (B, T) token ids [or (B, E, T, F) entities] -> (B, out) [(B, E, out)].

        ``lengths`` (B,) or ``mask`` (B, T) mark right-padded variable-length sequences.
        Classification models return logits (use ``predict_proba`` for probabilities). A model with a
        distribution head returns its point forecast (median / location); ``distribution=True`` returns the
        whole (B, [E,] out, P): quantiles at ``config.quantiles`` or Student-t (location, scale, dof). It is a
        flag of ``forward`` (not another method) so a DDP-wrapped model trains through it.
        """
        return self.forward_with_attention(x, lengths, mask=mask, distribution=distribution)[0]

    @torch.no_grad()
    def predict_distribution(self, x: torch.Tensor, lengths: torch.Tensor | None = None, *,
                             mask: torch.Tensor | None = None) -> torch.Tensor:
        """The distribution head's (B, [E,] out, P) output, without gradients (see ``forward``)."""
        return self.forward(x, lengths, mask=mask, distribution=True)

    @property
    def has_focus(self) -> bool:
        """Whether ``focus`` can say what the model looks at (it can for single-sequence models with
        attention or max pooling, or with the relational module on the last step)."""
        cfg = self.config
        return not cfg.entities and (cfg.pooling in ("attention", "max") or (
            cfg.relational and cfg.pooling in ("last", "concat") and hasattr(self.relational, "key_shares")))

    @torch.no_grad()
    def focus(self, x: torch.Tensor, lengths: torch.Tensor | None = None, *,
              mask: torch.Tensor | None = None) -> tuple[torch.Tensor, str]:
        """What the model looks at, (B, T) per sequence: attention-pooling weights; for max pooling the share
        of units whose max comes from each step; for the relational last-step model the share of relation
        units whose max comes from each step. Returns (weights, kind)."""
        if self.config.entities:
            raise ValueError("focus is defined for single-sequence models, not multi-entity ones.")
        if self.config.pooling == "attention":
            return self.forward_with_attention(x, lengths, mask=mask)[1].squeeze(-1), "attention weights"
        if not self.has_focus:
            raise ValueError("focus needs attention or max pooling, or the pairwise relational module with last-step "
                             "pooling.")
        mask = self._mask(x, lengths, mask, x.size(1))
        h = self.encode(x, mask)
        if self.config.pooling == "max":
            if self.config.relational:
                h = self.relational(h, mask)
            return max_shares(h, mask), "max-pooling focus (share of units whose max comes from each step)"
        B, T, _ = h.shape
        last = (mask.sum(1) - 1) if mask is not None else torch.full((B,), T - 1, device=h.device)
        return self.relational.key_shares(h, mask, query=last), "relational focus (share of max-winning units)"

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor, lengths: torch.Tensor | None = None, *,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
        """Class probabilities (softmax of the logits); classification models only."""
        if self.config.task != "classification":
            raise ValueError("predict_proba needs a classification model (model.task = 'classification').")
        return torch.softmax(self.forward(x, lengths, mask=mask), dim=-1)

    # -- transfer ----------------------------------------------------------------------------------
    def freeze_encoder(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) everything but the head ``fc``: embedding, recurrence, relational, attention."""
        for name, module in self.named_children():
            if name != "fc":
                module.requires_grad_(not frozen)

    def with_new_head(self, output_size: int, *, task: str | None = None) -> "RelationalRNN":
        """A model sharing this one's encoder modules with a freshly initialised head (slide 14)."""
        cfg = replace(self.config, output_size=output_size, task=task or self.config.task)
        model = RelationalRNN(cfg)
        for name, module in self.named_children():
            if name != "fc":
                setattr(model, name, module)
        return model


def build_model(config: ModelConfig | dict) -> RelationalRNN:
    """Config (dataclass or dict) -> model."""
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    return RelationalRNN(config)
