"""Shared fixtures for the analysis tests: paths of the stored real QE outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "analysis" / "qe"


@pytest.fixture
def qe_data() -> Path:
    """Folder with the real QE outputs (see its README.md)."""
    return DATA


@pytest.fixture
def copy_calc(tmp_path: Path, qe_data: Path):
    """Copy one stored calculation folder to tmp (tests may damage their copy)."""
    import shutil

    def copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(qe_data / name, dst)
        return dst

    return copy
