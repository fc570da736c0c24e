"""Data stages: sources, validation, windowing, text batching. ``collate_fn`` (torch) is loaded on first use, so the
data stages start without torch."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for readers and the import graph (r2n2.depgraph)
    from .batching import collate_fn

__all__ = ["collate_fn"]


def __getattr__(name: str):
    if name == "collate_fn":
        from . import batching  # torch: batching builds tensors; the data stages run without it

        globals()[name] = batching.collate_fn
        return batching.collate_fn
    raise AttributeError(f"module 'r2n2.data' has no attribute {name!r}")
