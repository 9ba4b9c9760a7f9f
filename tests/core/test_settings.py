"""The settings object: sources, priority, strictness."""

from __future__ import annotations

from pathlib import Path

import pytest

from perovflow.errors import InputError
from perovflow.settings import get_settings


def test_yaml_then_env_then_kwargs(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = isolated_settings / "config.yaml"
    cfg.write_text("protocol: seed\nqe:\n  pw_cmd: /opt/qe/pw.x\n  npool: 2\n")
    s = get_settings()
    assert s.protocol == "seed"
    assert s.qe.pw_cmd == "/opt/qe/pw.x" and s.qe.npool == 2

    monkeypatch.setenv("PEROVFLOW_QE__PW_CMD", "pw-from-env.x")
    assert get_settings().qe.pw_cmd == "pw-from-env.x"  # env beats YAML
    assert get_settings(protocol="fast").protocol == "fast"  # kwargs beat everything


def test_read_at_run_time_not_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEROVFLOW_PARALLEL__MPI_PREFIX", "mpirun -np 2")
    assert get_settings().parallel.command("pw.x") == ["mpirun", "-np", "2", "pw.x"]
    monkeypatch.setenv("PEROVFLOW_PARALLEL__MPI_PREFIX", "srun")
    assert get_settings().parallel.command("pw.x") == ["srun", "pw.x"]


def test_code_section_overrides_global_parallel(isolated_settings: Path) -> None:
    (isolated_settings / "config.yaml").write_text(
        "parallel: {mpi_prefix: 'mpirun -np 4'}\nqe: {parallel: {mpi_prefix: 'srun', mpi_suffix: '-nk 2'}}\n"
    )
    s = get_settings()
    assert s.parallel_for("qe").command("pw.x") == ["srun", "pw.x", "-nk", "2"]
    assert s.parallel_for("cp2k").command("cp2k.psmp") == ["mpirun", "-np", "4", "cp2k.psmp"]


@pytest.mark.parametrize(
    "text",
    ["protocl: fast\n", "qe:\n  pw_command: x\n", "protocol: [unclosed\n", "protocol: medium\n"],
)
def test_bad_settings_file_is_one_line_error(isolated_settings: Path, text: str) -> None:
    (isolated_settings / "config.yaml").write_text(text)
    with pytest.raises(InputError) as err:
        get_settings()
    line = err.value.one_line()
    assert "\n" not in line and "fix:" in line
