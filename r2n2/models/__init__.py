"""Models: the relational module, the Relational Memory Core, the configurable core and the slide presets.

Imported lazily, like ``r2n2`` itself: ``from r2n2.models.config import ModelConfig`` (what the data stages need)
does not load torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import lazy_exports

if TYPE_CHECKING:  # what __getattr__ loads, spelled out for readers and for the import graph (r2n2.depgraph:
    # a stage that imports any module of this package depends on every one of them, as when they loaded eagerly)
    from .config import ModelConfig, register_cell, register_relation
    from .core import RelationalRNN, build_model, lengths_to_mask
    from .presets import (
        R2N2, AttentionR2N2, BidirectionalR2N2, EnhancedR2N2, GRUR2N2, MaskedR2N2, MultiEntityR2N2,
        R2N2Regressor, SentimentR2N2, StockPriceR2N2, TransferR2N2, VisualizableAttentionR2N2, visualize_attention,
    )
    from .relational import AttentionRelation, RelationalModule
    from .rmc import RelationalMemory, RelationalMemoryRNN

_EXPORTS = {
    **{name: "r2n2.models.config" for name in ("ModelConfig", "register_cell", "register_relation")},
    **{name: "r2n2.models.core" for name in ("RelationalRNN", "build_model", "lengths_to_mask")},
    **{name: "r2n2.models.presets" for name in (
        "R2N2", "AttentionR2N2", "BidirectionalR2N2", "EnhancedR2N2", "GRUR2N2", "MaskedR2N2", "MultiEntityR2N2",
        "R2N2Regressor", "SentimentR2N2", "StockPriceR2N2", "TransferR2N2", "VisualizableAttentionR2N2",
        "visualize_attention")},
    **{name: "r2n2.models.relational" for name in ("AttentionRelation", "RelationalModule")},
    **{name: "r2n2.models.rmc" for name in ("RelationalMemory", "RelationalMemoryRNN")},
}
__all__ = [
    "AttentionR2N2", "AttentionRelation", "BidirectionalR2N2", "EnhancedR2N2", "GRUR2N2", "MaskedR2N2", "ModelConfig", "MultiEntityR2N2",
    "R2N2", "R2N2Regressor", "RelationalMemory", "RelationalMemoryRNN", "RelationalModule", "RelationalRNN",
    "SentimentR2N2", "StockPriceR2N2", "TransferR2N2", "VisualizableAttentionR2N2", "build_model",
    "lengths_to_mask", "register_cell", "register_relation", "visualize_attention",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
