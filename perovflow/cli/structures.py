"""CLI: structures, defects, paths, interfaces, nanocrystals (filled by the structures layer)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Register the structure command groups on ``app``."""
