"""How a parallel code is launched on this machine: the automatic MPI prefix and rank count.

The default (``parallel.mpi_prefix`` unset) uses every core the process may run on:

* inside a SLURM allocation (``SLURM_JOB_ID`` set): the allocation's tasks
  (``SLURM_NTASKS`` or ``SLURM_NPROCS``; 1 if neither is set), through ``mpirun -np N``;
  Open MPI's and Intel MPI's ``mpirun`` read the allocation themselves. ``srun -n N`` is used
  with ``parallel.launcher: srun`` (or when there is no ``mpirun``): a direct ``srun`` launch
  needs an MPI built with SLURM's PMI, which Debian's Open MPI is not ("OMPI was not built
  with SLURM's PMI support");
* otherwise ``mpirun -np N`` with N = the cores in ``os.sched_getaffinity(0)`` divided by
  the OpenMP threads per rank;
* ``--allow-run-as-root`` only when running as root (Open MPI refuses root without it);
* ``--bind-to none`` when Open MPI's local ``mpirun`` starts fewer ranks than there are cores
  (a rank count set by the user, or OpenMP threads per rank), or when this process may run
  on only some of the machine's cores (``taskset``, a cpuset): Open MPI binds each rank to
  one core, counting from core 0 of the machine in every ``mpirun`` whatever the caller's
  affinity, so two one-rank runs side by side share core 0, a rank's OpenMP threads share
  one core, and a process pinned to core 1 would run its rank on core 0. Unbound, the ranks
  keep the caller's affinity;
* a bare binary when neither launcher is installed.

A launcher is preferred to a bare binary even on one core: pw.x run as an Open MPI
*singleton* loses its own error message when it aborts (Open MPI's ``show_help`` fails and
Fortran's buffered output dies with the process), while under ``mpirun`` it is printed.

Whatever the user sets wins: ``mpi_prefix: ""`` runs the bare binary, any other string is used
as given, and ``parallel.ranks`` fixes the rank count of the automatic prefix.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
from collections.abc import Mapping, Sequence


def available_cores() -> int:
    """Number of cores this process may run on (its CPU affinity, not the machine's size)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def slurm_ntasks(env: Mapping[str, str] | None = None) -> int | None:
    """Tasks of the current SLURM allocation; None outside SLURM."""
    env = os.environ if env is None else env
    if not env.get("SLURM_JOB_ID"):
        return None
    for key in ("SLURM_NTASKS", "SLURM_NPROCS"):
        value = env.get(key, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def auto_prefix(
    ranks: int | None = None,
    threads: int = 1,
    env: Mapping[str, str] | None = None,
    launcher: str = "auto",
) -> list[str]:
    """The automatic MPI launch prefix (see the module docstring); ``[]`` for a bare binary.

    Parameters
    ----------
    ranks
        Rank count to use instead of the allocation's tasks / the available cores.
    threads
        OpenMP threads per rank: locally the ranks are ``cores // threads``.
    env
        Environment to read SLURM variables from (default ``os.environ``).
    launcher
        ``auto`` (mpirun, else srun inside SLURM), ``mpirun`` or ``srun``.
    """
    ntasks = slurm_ntasks(env)
    count = ranks or ntasks or max(1, available_cores() // max(1, threads))
    use_srun = launcher == "srun" or (launcher == "auto" and not shutil.which("mpirun"))
    if use_srun and ntasks is not None and shutil.which("srun"):
        return ["srun", "-n", str(count)]
    if not shutil.which("mpirun"):
        return []
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    cores = available_cores()
    partial = ntasks is None and (count < cores or cores < (os.cpu_count() or cores))
    unbind = ["--bind-to", "none"] if partial and _open_mpi() else []
    return ["mpirun", *root, *unbind, "-np", str(count)]


@functools.cache
def _open_mpi() -> bool:
    """Whether ``mpirun`` is Open MPI's (its ``--version`` says so)."""
    import subprocess

    try:
        out = subprocess.run(["mpirun", "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return "Open MPI" in out.stdout + out.stderr


def require_executable(binary: str) -> None:
    """Raise a one-line error when ``binary`` (a name on PATH or a path) cannot be run.

    Checked before launching: under ``mpirun``/``srun`` a missing code would otherwise be
    the launcher's multi-line complaint rather than perovflow's one-line error.
    """
    from perovflow.errors import EngineError

    name = shlex.split(binary)[0] if binary.strip() else binary
    found = shutil.which(name)
    if found is None:
        why = "not found on PATH" if os.sep not in name else "missing or not executable"
        raise EngineError(
            f"cannot start '{name}': {why}",
            "install it or point the perovflow settings at the right executable "
            "(perovflow doctor lists what is missing)",
        )


_RANK_FLAGS = ("-np", "-n", "--np", "--ntasks", "-c")


def mpi_ranks(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Number of MPI ranks a launch command starts.

    Reads ``-np N``, ``-n N``, ``--ntasks=N``/``--np=N``; a launcher without a count
    (``srun``, ``mpirun`` inside an allocation) starts ``SLURM_NTASKS`` ranks; a bare
    binary is one rank.
    """
    for i, tok in enumerate(argv):
        if tok in _RANK_FLAGS and i + 1 < len(argv) and str(argv[i + 1]).isdigit():
            return int(argv[i + 1])
        m = re.fullmatch(r"--(?:ntasks|np|n)=(\d+)", str(tok))
        if m:
            return int(m.group(1))
    names = {os.path.basename(str(t)) for t in argv}
    if names & {"srun", "mpirun", "mpiexec", "orterun"}:
        ntasks = slurm_ntasks(env)
        if ntasks is not None:
            return ntasks
        return available_cores() if names & {"mpirun", "mpiexec", "orterun"} else 1
    return 1
