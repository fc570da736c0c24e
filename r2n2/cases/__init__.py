"""Use cases as plug-ins: the protocol and its kinds live here; the concrete cases are named only by
``r2n2.registry`` (importing this package loads no case)."""

from __future__ import annotations

from .base import CaseData, UseCase, WindowMeta

__all__ = ["UseCase", "CaseData", "WindowMeta"]
