"""Models: the relational module, the Relational Memory Core, the configurable core and the slide presets."""

from .config import ModelConfig, register_cell
from .core import RelationalRNN, build_model, lengths_to_mask
from .presets import (
    R2N2, AttentionR2N2, BidirectionalR2N2, EnhancedR2N2, GRUR2N2, MaskedR2N2, MultiEntityR2N2,
    R2N2Regressor, SentimentR2N2, StockPriceR2N2, TransferR2N2, VisualizableAttentionR2N2, visualize_attention,
)
from .relational import RelationalModule
from .rmc import RelationalMemory, RelationalMemoryRNN
