"""The slide deck's classes, each a preset of ``RelationalRNN``.

Constructor signatures, output shapes and submodule names match the slides, so the slides' usage snippets
run unchanged and a state_dict saved from a slide class loads here with ``strict=True``. The slides'
defects are fixed: softmax-from-forward (slide 7), the crash on 4-D input (slide 9), the blocking
``plt.show`` (slide 12), and O(T²) memory in the relational module (slide 2).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .config import ModelConfig
from .core import RelationalRNN
from ..io import write_with

__all__ = [
    "R2N2", "EnhancedR2N2", "AttentionR2N2", "MaskedR2N2", "SentimentR2N2", "StockPriceR2N2",
    "MultiEntityR2N2", "GRUR2N2", "BidirectionalR2N2", "VisualizableAttentionR2N2", "R2N2Regressor",
    "TransferR2N2", "visualize_attention",
]


class R2N2(RelationalRNN):
    """Slide 1: plain RNN, last step, linear head."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__(ModelConfig(input_size=input_size, hidden_size=hidden_size, output_size=output_size,
                                     relational=False))


class EnhancedR2N2(RelationalRNN):
    """Slide 3: RNN + relational module; only the last step's relations are computed."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__(ModelConfig(input_size=input_size, hidden_size=hidden_size, output_size=output_size))


class R2N2Regressor(EnhancedR2N2):
    """Slide 13: the regressor tuned with skorch (same network as ``EnhancedR2N2``)."""


class AttentionR2N2(RelationalRNN):
    """Slide 5: RNN + attention pooling over time."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__(ModelConfig(input_size=input_size, hidden_size=hidden_size, output_size=output_size,
                                     relational=False, pooling="attention"))


class VisualizableAttentionR2N2(AttentionR2N2):
    """Slide 12: attention model whose forward also returns the (B, T, 1) attention weights."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, *,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_with_attention(x, lengths, mask=mask)


class MaskedR2N2(RelationalRNN):
    """Slide 6: plain RNN over right-padded variable-length batches, ``forward(x, lengths)``."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__(ModelConfig(input_size=input_size, hidden_size=hidden_size, output_size=output_size,
                                     relational=False))


class SentimentR2N2(RelationalRNN):
    """Slide 7: token ids -> embedding -> RNN -> relational -> logits (``predict_proba`` for probabilities)."""

    def __init__(self, vocab_size: int, embed_size: int, hidden_size: int, output_size: int):
        super().__init__(ModelConfig(vocab_size=vocab_size, embed_size=embed_size, hidden_size=hidden_size,
                                     output_size=output_size, task="classification"))


class StockPriceR2N2(RelationalRNN):
    """Slide 8: stacked RNN + relational module for forecasting."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int, num_layers: int):
        super().__init__(ModelConfig(input_size=input_size, hidden_size=hidden_size, output_size=output_size,
                                     num_layers=num_layers))


class MultiEntityR2N2(RelationalRNN):
    """Slide 9, fixed: input (B, E, T, F); each entity's sequence is encoded, then entities are related
    to each other by the relational module; output (B, E, out)."""

    def __init__(self, num_entities: int, input_size: int, hidden_size: int, output_size: int):
        if num_entities < 1:
            raise ValueError(f"MultiEntityR2N2: num_entities must be >= 1, got {num_entities}.")
        super().__init__(ModelConfig(input_size=input_size, hidden_size=hidden_size, output_size=output_size,
                                     entities=True))
        self.num_entities = num_entities

    def forward_with_attention(self, x, lengths=None, *, mask=None, distribution=False):
        if x.dim() == 4 and x.size(1) != self.num_entities:
            raise ValueError(f"MultiEntityR2N2 was built for {self.num_entities} entities, "
                             f"got input with {x.size(1)}.")
        return super().forward_with_attention(x, lengths, mask=mask, distribution=distribution)


class GRUR2N2(RelationalRNN):
    """Slide 10: GRU + relational module (the recurrence is named ``gru``)."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__(ModelConfig(input_size=input_size, hidden_size=hidden_size, output_size=output_size,
                                     cell="gru", encoder_name="gru"))


class BidirectionalR2N2(RelationalRNN):
    """Slide 11: bidirectional RNN (named ``birnn``) + relational module over the 2H-wide states."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__(ModelConfig(input_size=input_size, hidden_size=hidden_size, output_size=output_size,
                                     bidirectional=True, encoder_name="birnn"))


class TransferR2N2(RelationalRNN):
    """Slide 14: reuse a pretrained model's encoder (shared modules) under a new head."""

    def __init__(self, pretrained_model: RelationalRNN, new_output_size: int):
        if not isinstance(pretrained_model, RelationalRNN):
            raise TypeError("TransferR2N2 needs an r2n2 model (any RelationalRNN preset) as pretrained_model, "
                            f"got {type(pretrained_model).__name__}.")
        super().__init__(pretrained_model.with_new_head(new_output_size).config)
        for name, module in pretrained_model.named_children():
            if name != "fc":
                setattr(self, name, module)


def visualize_attention(input_sequence, attention_weights, path: str | Path = "attention.png", *,
                        title: str = "Attention Weights", tokens: list[list[str]] | None = None,
                        row_labels: list[str] | None = None, caption: str | None = None) -> Path:
    """Slide 12's heat-map, saved as a PNG; never opens a window.

    ``attention_weights``: (B, T) or (B, T, 1). Without ``tokens``: time steps × batch samples, as the slide drew
    it. With ``tokens`` (each sample's token strings): one row per sample, each cell a token written in its colour
    (cells past a sample's length stay blank); ``row_labels`` name the rows. ``caption`` goes under the picture
    (say what the colour is). Returns the path written.
    """
    from matplotlib.figure import Figure  # no pyplot: nothing global, nothing that blocks

    w = attention_weights.detach().cpu() if isinstance(attention_weights, torch.Tensor) else \
        torch.as_tensor(attention_weights)
    if w.dim() == 3:
        w = w.squeeze(-1)
    if w.dim() != 2:
        raise ValueError(f"attention_weights must be (batch, steps) or (batch, steps, 1), got {tuple(w.shape)}.")
    if tokens is None:
        fig = Figure(figsize=(10, 5.6 if caption else 5))
        ax = fig.subplots()
        im = ax.imshow(w.numpy().T, cmap="viridis", aspect="auto")
        ax.set_xlabel("Batch Samples")
        ax.set_ylabel("Time Steps")
    else:
        if len(tokens) != w.shape[0]:
            raise ValueError(f"tokens has {len(tokens)} samples, attention_weights {w.shape[0]}.")
        width = max(len(t) for t in tokens)
        grid = torch.full((len(tokens), width), float("nan"))
        for r, t in enumerate(tokens):
            grid[r, :len(t)] = w[r, :len(t)]
        fig = Figure(figsize=(max(8.0, 0.75 * width + 3), 0.55 * len(tokens) + (2.2 if caption else 1.6)))
        ax = fig.subplots()
        im = ax.imshow(grid.numpy(), cmap="viridis", aspect="auto")
        top = float(torch.nan_to_num(grid, nan=0.0).max()) or 1.0
        for r, t in enumerate(tokens):
            for c, tok in enumerate(t):
                ax.text(c, r, tok if len(tok) <= 9 else tok[:8] + "…", ha="center", va="center", fontsize=7,
                        color="black" if grid[r, c] > 0.6 * top else "white")
        ax.set_yticks(range(len(tokens)), row_labels or [str(r) for r in range(len(tokens))], fontsize=8)
        ax.set_xticks(range(width), [str(c + 1) for c in range(width)], fontsize=7)
        ax.set_xlabel("token position")
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    if caption:
        h = fig.get_figheight()
        fig.text(0.01, 0.15 / h, caption, fontsize=8, ha="left", va="bottom", wrap=True)
        fig.subplots_adjust(bottom=1.05 / h, top=1 - 0.45 / h, left=0.12, right=0.97)

    # atomically, and without a software-version chunk: equal plots give equal bytes
    return write_with(lambda tmp: fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None}), path)
