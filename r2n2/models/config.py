"""ModelConfig: everything needed to rebuild a model; stored inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from itertools import pairwise

__all__ = ["ModelConfig", "register_cell", "register_relation", "CUSTOM_CELLS", "CUSTOM_RELATIONS"]

CELLS = ("rnn", "gru", "lstm", "rmc")
# name -> factory(config, input_size) returning a module with forward(x, state=None, mask=None) -> (out, state)
# and an ``output_size`` attribute; padded steps (mask False) must leave the state unchanged.
CUSTOM_CELLS: dict = {}


def register_cell(name: str, factory) -> None:
    """Plug in a custom recurrent cell, usable as ``ModelConfig(cell=name)`` (and ``model.cell`` in params)."""
    if name in CELLS:
        raise ValueError(f"cell name {name!r} is built in; choose another name.")
    CUSTOM_CELLS[name] = factory
# The relational module (``model.relation``, used when ``model.relational``): built-ins made in ``.core``
# (``pairwise``: the slides' max over partners, sequences and entities alike; ``attention``: multi-head attention
# over the other steps or entities, added to each one's state); plug-ins by ``register_relation``.
RELATIONS = ("pairwise", "attention")
# name -> factory(config, width) returning a module with forward(h (B, T, D), mask (B, T) bool | None = None,
# query (B,) long | None = None): (B, T, D) related states, or with ``query`` the (B, D) row of each query step.
# Entities go through it as one sequence per date (h (B, E, D), no mask, no query). The identity embedding, when
# ``model.identity``, is added to each entity's state before any relation, registered or built in.
CUSTOM_RELATIONS: dict = {}


def register_relation(name: str, factory) -> None:
    """Plug in a relational module, usable as ``ModelConfig(relation=name)`` (and ``model.relation`` in params):
    ``factory(config, width) -> nn.Module`` with the forward described at ``CUSTOM_RELATIONS``."""
    if name in RELATIONS:
        raise ValueError(f"relation name {name!r} is built in; choose another name.")
    CUSTOM_RELATIONS[name] = factory


POOLINGS = ("last", "attention", "mean", "max", "concat")
TASKS = ("regression", "classification")
DISTRIBUTIONS = ("none", "quantile", "student_t")
RENAMED = {"entity_relation": "relation"}  # old key -> new key (2026-12-07)
DEFAULT_QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


@dataclass
class ModelConfig:
    input_size: int = 5                 # features per step (ignored when vocab_size is set)
    output_size: int = 1                # regression targets or number of classes
    hidden_size: int = 64               # recurrent width (per direction); rmc derives its own width
    cell: str = "rnn"                   # rnn | gru | lstm | rmc
    num_layers: int = 1                 # stacked recurrent layers
    bidirectional: bool = False         # run a second recurrence backwards (not for rmc)
    dropout: float = 0.0                # between recurrent layers and before the head
    relational: bool = True             # slide-2 pairwise relational module on the recurrent states
    pooling: str = "last"               # last | attention | mean | max | concat: how a sequence becomes one
    #                                     vector; concat = [last, max, mean] (3x wide); with relational, last
    #                                     and concat relate the last step only, O(T), the others all pairs, O(T^2)
    task: str = "regression"            # regression | classification (only changes predict_proba / losses)
    vocab_size: int | None = None       # token ids as input through an embedding (slide 7) when set
    embed_size: int = 100               # embedding width when vocab_size is set
    entities: bool = False              # input (B, E, T, F): encode each entity, relate entities (slide 9)
    identity: bool = False              # with entities: a learned embedding per entity (which stock is which),
    #                                     added to its encoding before the relation, so "my leader is s00" can
    #                                     be expressed; the plain relation is blind to who is who
    num_entities: int = 0               # entities the identity embedding knows (set from the data)
    entity_mixing: bool = False         # with entities: a linear cross-entity path, each entity's state plus
    #                                     sum_j M[i, j] V z_j over the others (M: entities x entities, from 0),
    #                                     the lead-lag a regression on all stocks' lags finds
    relation: str = "pairwise"          # the relational module: pairwise (the slides' max over partners) |
    #                                     attention (multi-head attention over the other steps or entities, added
    #                                     to each one's state) | a name given to register_relation
    encoder_name: str = "rnn"           # attribute name of the recurrence ("rnn", "gru", "birnn") for
    #                                     state_dict compatibility with the slide classes
    distribution: str = "none"          # none (a point forecast) | quantile (non-crossing quantiles, pinball
    #                                     loss) | student_t (location, scale, dof; NLL): regression only; the
    #                                     point forecast (median / location) stays what forward returns
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES  # quantile levels: strictly increasing in (0, 1), with 0.5
    relational_chunk: int = 0           # queries per chunk in the all-pairs relational case (0 = automatic)
    # Relational Memory Core (cell = "rmc"), Santoro et al. 2018
    mem_slots: int = 4                  # memory rows
    head_size: int = 16                 # width of one attention head; a row is head_size * num_heads
    num_heads: int = 2                  # attention heads
    num_blocks: int = 1                 # attention + MLP blocks per step
    gate_style: str | None = "unit"     # unit | memory | None
    attention_mlp_layers: int = 2       # depth of the row-wise MLP
    forget_bias: float = 1.0            # added to the forget gate pre-activation
    input_bias: float = 0.0             # added to the input gate pre-activation

    def __post_init__(self) -> None:
        def positive(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{name} must be a positive integer, got {value!r}.")

        if isinstance(self.relational_chunk, bool) or not isinstance(self.relational_chunk, int) \
                or self.relational_chunk < 0:
            raise ValueError(f"model.relational_chunk must be an integer >= 0, got {self.relational_chunk!r}.")
        for name in ("input_size", "output_size", "hidden_size", "num_layers", "embed_size", "mem_slots", "head_size", "num_heads", "num_blocks",
                     "attention_mlp_layers"):
            positive(name)
        if self.vocab_size is not None:
            positive("vocab_size")
        if self.cell not in CELLS and self.cell not in CUSTOM_CELLS:
            raise ValueError(f"model.cell must be one of {', '.join((*CELLS, *CUSTOM_CELLS))}, got {self.cell!r}.")
        if self.pooling not in POOLINGS:
            raise ValueError(f"model.pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}.")
        if self.task not in TASKS:
            raise ValueError(f"model.task must be one of {', '.join(TASKS)}, got {self.task!r}.")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout!r}.")
        if self.cell not in ("rnn", "gru", "lstm") and self.bidirectional:
            raise ValueError(f"model.bidirectional is not supported with cell {self.cell!r}.")
        if self.gate_style not in ("unit", "memory", None):
            raise ValueError(f"model.gate_style must be 'unit', 'memory' or null, got {self.gate_style!r}.")
        if self.entities and self.pooling == "concat":
            raise ValueError("model.pooling 'concat' cannot be combined with model.entities.")
        if self.entities and self.vocab_size is not None:
            raise ValueError("model.entities cannot be combined with model.vocab_size.")
        if self.relation not in RELATIONS and self.relation not in CUSTOM_RELATIONS:
            raise ValueError(f"model.relation must be one of {', '.join((*RELATIONS, *CUSTOM_RELATIONS))}, "
                             f"got {self.relation!r}.")
        if self.entity_mixing and not self.entities:
            raise ValueError("model.entity_mixing needs model.entities (it mixes the entities of a panel).")
        width = self.encoder_size if self.cell in CELLS else None  # a plug-in cell says its width when built
        if self.relational and self.relation == "attention" and width and width % self.num_heads:
            raise ValueError(f"model.num_heads ({self.num_heads}) must divide the width the attention relation "
                             f"reads ({width}); choose a divisor of {width} or relation pairwise.")
        if self.identity and not self.entities:
            raise ValueError("model.identity needs model.entities (it tells the entities of a panel apart).")
        if isinstance(self.num_entities, bool) or not isinstance(self.num_entities, int) or self.num_entities < 0:
            raise ValueError(f"model.num_entities must be an integer >= 0, got {self.num_entities!r}.")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"model.distribution must be one of {', '.join(DISTRIBUTIONS)}, "
                             f"got {self.distribution!r}.")
        if self.distribution != "none" and self.task != "regression":
            raise ValueError(f"model.distribution {self.distribution!r} needs model.task 'regression', "
                             f"got {self.task!r}.")
        try:
            levels = tuple(float(q) for q in self.quantiles)
        except (TypeError, ValueError):
            raise ValueError(f"model.quantiles must be a list of numbers, got {self.quantiles!r}.") from None
        if not levels or any(not 0.0 < q < 1.0 for q in levels) or any(b <= a for a, b in pairwise(levels)):
            raise ValueError(f"model.quantiles must be strictly increasing levels in (0, 1), got {list(levels)}.")
        if 0.5 not in levels:
            raise ValueError(f"model.quantiles must contain 0.5 (the median is the point forecast), got {list(levels)}.")
        self.quantiles = levels
        if not self.encoder_name.isidentifier():
            raise ValueError(f"model.encoder_name must be a Python identifier, got {self.encoder_name!r}.")

    @property
    def head_params(self) -> int:
        """Outputs of the head per target: 1 (point), len(quantiles) (quantile) or 3 (student_t)."""
        return {"none": 1, "quantile": len(self.quantiles), "student_t": 3}[self.distribution]

    @property
    def encoder_size(self) -> int:
        """Width of the per-step recurrent output that the relational module and head see."""
        if self.cell == "rmc":
            return self.mem_slots * self.head_size * self.num_heads
        return self.hidden_size * (2 if self.bidirectional else 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["quantiles"] = list(self.quantiles)  # YAML / JSON friendly
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        if "entity_relation" in data and not data.get("entities"):  # before 2026-12-07 it chose the entities'
            data = {**data, "entity_relation": "pairwise"}  # relation only: a sequence model's was always pairwise
        data = {RENAMED.get(k, k): v for k, v in data.items()}  # checkpoints written before a rename load
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config key(s): {', '.join(unknown)}.")
        return cls(**data)
