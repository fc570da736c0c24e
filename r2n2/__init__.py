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
        "build_model", "lengths_to_mask", "register_cell", "register_relation", "visualize_attention")},
}
__all__ = sorted(_EXPORTS)


def lazy_exports(package: str, exports: dict[str, str]):
    """``(__getattr__, __dir__)`` for ``package``: each name of ``exports`` (name -> module) is imported from its
    module on first use and kept in the package's namespace (PEP 562)."""
    import sys

    def __getattr__(name: str):
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted([*vars(sys.modules[package]), *exports])

    return __getattr__, __dir__


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
