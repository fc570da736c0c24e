"""r2n2: relational recurrent neural networks in PyTorch.

The slide deck's classes (``R2N2`` ... ``TransferR2N2``), the configurable core (``ModelConfig`` ->
``build_model``), the Relational Memory Core (``RelationalMemory``) and safe checkpoints. Imported lazily:
``import r2n2.errors`` (what the CLI needs to answer at once) does not load torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "CheckpointError": "r2n2.errors", "load_checkpoint": "r2n2.checkpoint", "save_checkpoint": "r2n2.checkpoint",
    "collate_fn": "r2n2.data.batching",
    **{name: "r2n2.models" for name in (
        "R2N2", "AttentionR2N2", "BidirectionalR2N2", "EnhancedR2N2", "GRUR2N2", "MaskedR2N2", "ModelConfig",
        "MultiEntityR2N2", "R2N2Regressor", "RelationalMemory", "RelationalMemoryRNN", "RelationalModule",
        "RelationalRNN", "SentimentR2N2", "StockPriceR2N2", "TransferR2N2", "VisualizableAttentionR2N2",
        "build_model", "lengths_to_mask", "register_cell", "visualize_attention")},
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'r2n2' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])
