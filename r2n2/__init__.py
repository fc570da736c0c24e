"""r2n2: relational recurrent neural networks in PyTorch.

The slide deck's classes (``R2N2`` ... ``TransferR2N2``), the configurable core (``ModelConfig`` ->
``build_model``), the Relational Memory Core (``RelationalMemory``) and safe checkpoints.
"""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .data.batching import collate_fn
from .models import (
    R2N2, AttentionR2N2, BidirectionalR2N2, EnhancedR2N2, GRUR2N2, MaskedR2N2, ModelConfig, MultiEntityR2N2,
    R2N2Regressor, RelationalMemory, RelationalMemoryRNN, RelationalModule, RelationalRNN, SentimentR2N2,
    StockPriceR2N2, TransferR2N2, VisualizableAttentionR2N2, build_model, lengths_to_mask, register_cell,
    visualize_attention,
)

__version__ = "0.1.0"
