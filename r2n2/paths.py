"""The data contract: where each stage reads and writes, relative to a project root (default: cwd)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["CasePaths"]


@dataclass(frozen=True)
class CasePaths:
    case: str
    root: Path = Path(".")

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw" / f"{self.case}.parquet"

    @property
    def validated(self) -> Path:
        return self.root / "data" / "validated" / f"{self.case}.parquet"

    @property
    def reports(self) -> Path:
        return self.root / "data" / "reports" / self.case

    @property
    def windows(self) -> Path:
        return self.root / "data" / "windows" / self.case

    @property
    def model_dir(self) -> Path:
        return self.root / "data" / "models" / self.case

    @property
    def finetuned_dir(self) -> Path:
        return self.root / "data" / "models" / f"{self.case}-finetuned"
