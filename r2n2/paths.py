"""The data contract: every path a stage reads or writes, once, relative to a project root (default: cwd)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["CasePaths"]


@dataclass(frozen=True)
class CasePaths:
    case: str
    root: Path = Path(".")

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def raw(self) -> Path:
        return self.data / "raw" / f"{self.case}.parquet"

    @property
    def validated(self) -> Path:
        return self.data / "validated" / f"{self.case}.parquet"

    @property
    def reports(self) -> Path:
        return self.data / "reports" / self.case

    @property
    def windows(self) -> Path:
        return self.data / "windows" / self.case

    @property
    def model_dir(self) -> Path:
        return self.data / "models" / self.case

    @property
    def baselines_dir(self) -> Path:
        return self.data / "models" / f"{self.case}-baselines"

    @property
    def finetuned_dir(self) -> Path:
        return self.data / "models" / f"{self.case}-finetuned"

    @property
    def scratch_dir(self) -> Path:
        return self.data / "models" / f"{self.case}-scratch"

    @property
    def champion_dir(self) -> Path:
        """The promoted model: outside every DVC output, so `dvc repro` never deletes it."""
        return self.data / "champion" / self.case

    @property
    def state_dir(self) -> Path:
        """Per-epoch training state (resume after a kill): outside every DVC output."""
        return self.data / "state" / self.case

    def rel(self, path: Path) -> str:
        """``path`` relative to the root, with forward slashes (for dvc.yaml and messages)."""
        return Path(path).relative_to(self.root).as_posix()
