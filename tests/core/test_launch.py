"""The automatic launch: all cores locally through mpirun, srun inside SLURM, user wins."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from perovflow.launch import auto_prefix, mpi_ranks
from perovflow.settings import get_settings

ROOT = ["--allow-run-as-root"] if os.geteuid() == 0 else []
needs_mpirun = pytest.mark.skipif(not shutil.which("mpirun"), reason="needs mpirun (openmpi-bin)")


def _clear_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("SLURM_"):
            monkeypatch.delenv(key)


@needs_mpirun
def test_default_uses_the_cores_the_process_is_pinned_to():
    # taskset pins a child process to the last core: the prefix it computes starts 1 rank, and
    # that rank runs on the pinned core (Open MPI alone would bind it to core 0 of the machine)
    last = max(os.sched_getaffinity(0))
    code = (
        "import subprocess, sys; from perovflow.settings import get_settings; "
        "argv = get_settings().parallel.command(sys.executable); print(argv); "
        "print(subprocess.run([*argv, '-c', 'import os; print(sorted(os.sched_getaffinity(0)))'],"
        " capture_output=True, text=True).stdout.strip())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PEROVFLOW_PARA"))}
    out = subprocess.run(
        ["taskset", "-c", str(last), sys.executable, "-c", code],
        capture_output=True, text=True, check=True, env=env, timeout=120,
    ).stdout.splitlines()  # fmt: skip
    unbind = ["--bind-to", "none"] if (os.cpu_count() or 1) > 1 else []
    assert out[0] == str(["mpirun", *ROOT, *unbind, "-np", "1", sys.executable])
    assert out[1] == str([last])


@needs_mpirun
def test_default_is_mpirun_on_all_cores_locally(monkeypatch):
    _clear_slurm(monkeypatch)
    ncores = len(os.sched_getaffinity(0))
    pinned = ["--bind-to", "none"] if ncores < (os.cpu_count() or ncores) else []  # see above
    command = get_settings().parallel.command("pw.x")
    assert command == ["mpirun", *ROOT, *pinned, "-np", str(ncores), "pw.x"]
    monkeypatch.setenv("PEROVFLOW_PARALLEL__OMP_THREADS", str(ncores))  # threads take the cores
    unbind = ["--bind-to", "none"] if ncores > 1 or pinned else []  # the threads need them all
    assert get_settings().parallel.prefix() == ["mpirun", *ROOT, *unbind, "-np", "1"]


@needs_mpirun
def test_a_one_rank_run_may_use_every_core(monkeypatch):
    # Open MPI binds a rank to core 0 in every mpirun: two one-rank runs side by side would
    # share that core. The rank that the automatic prefix starts may run on all of them.
    _clear_slurm(monkeypatch)
    monkeypatch.setenv("PEROVFLOW_PARALLEL__RANKS", "1")
    code = "import os; print(sorted(os.sched_getaffinity(0)))"
    argv = get_settings().parallel.command(sys.executable)
    out = subprocess.run([*argv, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == str(sorted(os.sched_getaffinity(0))), out.stderr[-500:]


def test_inside_slurm_the_allocations_tasks_are_used(monkeypatch, tmp_path):
    _clear_slurm(monkeypatch)
    for name in ("srun", "mpirun"):  # only looked up on PATH, never run
        fake = tmp_path / name
        fake.write_text("#!/bin/sh\n")
        fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS", "6")
    prefix = auto_prefix()
    assert prefix == ["mpirun", *ROOT, "-np", "6"]  # Open MPI's mpirun reads the allocation
    assert mpi_ranks([*prefix, "pw.x"]) == 6
    monkeypatch.setenv("PEROVFLOW_PARALLEL__LAUNCHER", "srun")  # an MPI built with SLURM's PMI
    srun = get_settings().parallel.prefix()
    assert srun == ["srun", "-n", "6"] and mpi_ranks([*srun, "pw.x"]) == 6
    assert mpi_ranks(["srun", "pw.x"]) == 6  # srun without a count starts the allocation's tasks


def test_user_settings_win_over_the_automatic_launch(monkeypatch):
    monkeypatch.setenv("PEROVFLOW_PARALLEL__MPI_PREFIX", "")
    assert get_settings().parallel.command("pw.x") == ["pw.x"]
    monkeypatch.setenv("PEROVFLOW_PARALLEL__MPI_PREFIX", "mpiexec -n 3")
    assert get_settings().parallel.command("pw.x") == ["mpiexec", "-n", "3", "pw.x"]
    monkeypatch.delenv("PEROVFLOW_PARALLEL__MPI_PREFIX")
    monkeypatch.setenv("PEROVFLOW_PARALLEL__RANKS", "5")
    _clear_slurm(monkeypatch)
    if shutil.which("mpirun"):
        assert get_settings().parallel.prefix()[-2:] == ["-np", "5"]
