"""Data stages: sources, validation, windowing, text batching."""

from .batching import collate_fn
