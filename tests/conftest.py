"""Shared fixtures: every test gets its own settings file, project folder and scratch.

Tests that need an external binary carry a marker (``qe``, ``cp2k``, ``cp2k_data``, ``slurm``,
``mlip``).
They are skipped with a reason when the binary is missing, except in CI (``CI=true``),
where ``scripts/test.sh`` installs everything and a missing binary is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

NEEDS: dict[str, tuple[str, callable]] = {
    "qe": (
        "pw.x, projwfc.x and ld1.x",
        lambda: all(shutil.which(x) for x in ("pw.x", "projwfc.x", "ld1.x")),
    ),
    "cp2k": ("cp2k.psmp", lambda: bool(shutil.which("cp2k.psmp") or shutil.which("cp2k"))),
    "cp2k_data": (
        "cp2k-data's GTH_POTENTIALS",
        lambda: Path("/usr/share/cp2k/GTH_POTENTIALS").is_file(),
    ),
    "slurm": ("a running SLURM cluster", lambda: _slurm_up()),
    "mlip": (
        "chgnet and sevenn",
        lambda: all(importlib.util.find_spec(m) is not None for m in ("chgnet", "sevenn")),
    ),
    "browser": (
        "chromium",
        lambda: bool(shutil.which("chromium") or shutil.which("chromium-browser")),
    ),
}


def _slurm_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    return os.system("sinfo -h >/dev/null 2>&1") == 0


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _missing(item: pytest.Item, cache: dict[str, bool]) -> list[str]:
    """What ``item`` needs (by marker) that this machine lacks."""
    out = []
    for name, (what, check) in NEEDS.items():
        if name in item.keywords:
            if name not in cache:
                cache[name] = check()
            if not cache[name]:
                out.append(what)
    return out


_CACHE: dict[str, bool] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Locally, skip tests whose external needs are missing (CI fails them instead)."""
    if _in_ci():
        return
    for item in items:
        missing = _missing(item, _CACHE)
        if missing:
            item.add_marker(
                pytest.mark.skip(
                    reason=f"needs {', '.join(missing)} (installed by scripts/test.sh)"
                )
            )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """In CI (CI=true) a missing binary or cluster is an error, never a skip."""
    if _in_ci():
        missing = _missing(item, _CACHE)
        if missing:
            pytest.fail(
                f"CI must provide {', '.join(missing)}: scripts/test.sh installs and starts them"
            )


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point settings, store and scratch at a temporary folder for every test."""
    for key in list(os.environ):
        if key.startswith("PEROVFLOW_"):
            monkeypatch.delenv(key)
    home = tmp_path / "perovflow-home"
    home.mkdir()
    monkeypatch.setenv("PEROVFLOW_CONFIG_FILE", str(home / "config.yaml"))
    monkeypatch.setenv("PEROVFLOW_PROJECT_DIR", str(home / "project"))
    monkeypatch.setenv("PEROVFLOW_SCRATCH_DIR", str(home / "scratch"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return home


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run the perovflow CLI in-process; returns ``(exit_code, stdout, stderr)``."""
    from perovflow.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def cp2k_run(tmp_path):
    """Copy a stored real CP2K run (tests/data/engines/cp2k/NAME, gzipped files unpacked) to tmp."""
    import gzip
    import shutil
    from pathlib import Path

    data = Path(__file__).parent / "data" / "engines" / "cp2k"

    def unpack(name: str) -> Path:
        for src in (data / name).iterdir():
            if src.suffix == ".gz":
                with gzip.open(src, "rb") as fin, open(tmp_path / src.stem, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            else:
                shutil.copy(src, tmp_path / src.name)
        return tmp_path

    return unpack


@pytest.fixture
def fake_executable(tmp_path):
    """Write an executable shell script (a stand-in at the executable boundary)."""
    import stat

    def write(name: str, body: str) -> Path:
        path = tmp_path / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
        return path

    return write
