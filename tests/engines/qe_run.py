"""Shared helper of the real-pw.x engine tests (pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perovflow.engines.qe.jobs import run_qe_task


def run(maker: Any, structure: Any, tmp_path: Path, name: str, prev_dir: Any = None) -> Any:
    """``run_qe_task`` of ``maker`` on ``structure`` in a fresh folder ``tmp_path / name``."""
    directory = tmp_path / name
    directory.mkdir()
    return run_qe_task(maker, structure, prev_dir, directory)
