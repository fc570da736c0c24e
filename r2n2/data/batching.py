"""Padding variable-length sequences into batches (slide 6)."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["collate_fn"]


def collate_fn(batch):
    """[(sequence (T_i, ...), label), ...] -> (padded (B, T_max, ...), lengths (B,), labels (B, ...)).

    Sequences are right-padded with zeros; pass ``lengths`` to a model so padding never changes outputs.
    """
    sequences, labels = zip(*batch)
    sequences = [torch.as_tensor(s) for s in sequences]
    lengths = torch.tensor([len(seq) for seq in sequences])
    padded = nn.utils.rnn.pad_sequence(sequences, batch_first=True)
    labels = torch.stack([torch.as_tensor(y) for y in labels])
    return padded, lengths, labels
