"""The data contract: every path a stage reads or writes, once, relative to a project root (default: cwd).

Two workspaces share one layout. The research workspace (``data/raw|validated|windows|models|reports/<case>``) is
written only by the stages, through ``dvc repro`` (or `make run`). The operations workspace of a case,
``data/ops/<case>/`` (``CasePaths.operations()``), holds everything retrain, monitor, serve, replay and champion
write: their own raw / validated / windows / models / reports tree with rolling cut dates, the champion registry,
``monitor.json``, ``promotion.json`` and replay outputs. Operations may read research outputs, never write them,
so `dvc status` is the same before and after any of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["CasePaths"]


@dataclass(frozen=True)
class CasePaths:
    case: str
    root: Path = Path(".")
    ops: bool = False                    # the operations workspace (data/ops/<case>/), not the research one

    def operations(self) -> "CasePaths":
        """The same case's operations workspace: every path below lies under ``data/ops/<case>/``."""
        return CasePaths(self.case, self.root, ops=True)

    @property
    def ops_dir(self) -> Path:
        """The case's operations tree (never a DVC output, never written by a stage under `dvc repro`)."""
        return self.root / "data" / "ops" / self.case

    @property
    def data(self) -> Path:
        return self.ops_dir if self.ops else self.root / "data"

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
        """The promoted model, its versions and history: in the operations tree (the same from either workspace),
        outside every DVC output, so `dvc repro` never deletes it."""
        return self.ops_dir / "champion"

    @property
    def state_dir(self) -> Path:
        """Per-epoch training state (resume after a kill): outside every DVC output."""
        return self.data / "state" / self.case

    def rel(self, path: Path) -> str:
        """``path`` relative to the root, with forward slashes (for dvc.yaml and messages)."""
        return Path(path).relative_to(self.root).as_posix()
