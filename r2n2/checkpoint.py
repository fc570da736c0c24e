"""Checkpoints that carry their own config: atomic save, safe (weights_only) load, device-portable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError
from .io import atomic_path
from .models.config import ModelConfig
from .models.core import RelationalRNN, build_model

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "atomic_torch_save", "CheckpointError"]

FORMAT_VERSION = 1


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """torch.save to a temp file in the target folder, fsync, then rename: a crash never leaves half a file."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def save_checkpoint(path: str | Path, model: RelationalRNN, *, metadata: dict | None = None,
                    extra: dict | None = None) -> Path:
    """Write config + state_dict + metadata (plain types) + optional extra tensors/state atomically."""
    payload = {
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    if extra:
        payload["extra"] = extra
    return atomic_torch_save(payload, path)


def read_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint dict safely (no arbitrary pickle code), mapping tensors to ``map_location``."""
    path = Path(path)
    if path.is_dir():  # a model folder such as data/models/stocks: its checkpoint is model.pt inside
        hint = f" Did you mean {path / 'model.pt'}?" if (path / "model.pt").is_file() else ""
        raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file.{hint}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist.")
    if path.stat().st_size == 0:  # torch says only "EOFError" here
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): an interrupted copy or save? Retrain, or "
                              "restore it with `dvc checkout`.")
    import zipfile

    if not zipfile.is_zipfile(path):  # torch saves a zip archive; its own error for anything else is cryptic
        raise CheckpointError(f"checkpoint {path} could not be read: it is not a torch checkpoint archive (a "
                              "truncated copy, or another kind of file). Retrain, or restore it with `dvc checkout`.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, wrong format, unsafe pickle
        raise CheckpointError(f"checkpoint {path} could not be read ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); "
                              "it may be truncated or not an r2n2 checkpoint.") from None
    if not isinstance(payload, dict) or "config" not in payload or "state_dict" not in payload:
        raise CheckpointError(f"checkpoint {path} is not an r2n2 checkpoint (no config/state_dict inside).")
    return payload


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> tuple[RelationalRNN, dict]:
    """Rebuild the model from the checkpoint's own config and load its weights strictly.

    Returns ``(model, metadata)``; the model is in eval mode on ``map_location``.
    """
    payload = read_checkpoint(path, map_location=map_location)
    try:
        model = build_model(ModelConfig.from_dict(payload["config"]))
        model.load_state_dict(payload["state_dict"], strict=True)
    except (ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} does not match its config: {str(exc).splitlines()[0]}") from None
    model.to(map_location).eval()
    return model, payload.get("metadata", {})
