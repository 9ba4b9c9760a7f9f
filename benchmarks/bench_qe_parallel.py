"""pw.x wall time: perovflow's default launch vs a bare serial ``pw.x`` and ``mpirun -np N pw.x``.

All three runs use the same ``espresso.pwi`` (cubic CsPbBr3, 5 atoms, fast protocol, 25 Ry,
2x2x2 k grid: 4 irreducible k-points) with OMP_NUM_THREADS=1:

* ``serial``: the bare binary, as perovflow launched it before (an MPI singleton, one core);
* ``mpirun``: plain ``mpirun -np N pw.x`` on the N cores this process may use;
* ``perovflow``: :func:`pw_argv` with no launch settings at all, i.e. the automatic prefix
  (``mpirun -np N`` locally, ``srun`` in a SLURM allocation) plus ``-nk`` pools chosen from
  the ranks and the irreducible k-points (k-point parallelism beats plane-wave distribution
  on small cells).

Each is run ``--repeat`` times in turn; the best time of each is printed side by side.
``--demo`` also times the main job (``perovflow demo``, each launch in a fresh project so
nothing is reused, the pseudopotentials converted beforehand: set-up excluded; ``--demo-only``
skips the small cell) under the same three launches (``serial`` = ``mpi_prefix: ""``,
``mpirun`` = ``mpi_prefix: "mpirun -np N"`` with ``qe.npool: 1``, ``perovflow`` = nothing set).

Run: ``.venv/bin/python benchmarks/bench_qe_parallel.py [--repeat 2] [--demo]``
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path


def _setup(work: Path) -> tuple[Path, list[str]]:
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    from perovflow.engines.pseudos import get_pseudos, pseudo_dir_for
    from perovflow.engines.qe.inputs import qe_input_set
    from perovflow.engines.qe.run import pw_argv, write_pw_input

    structure = Structure(
        Lattice.cubic(5.87),
        ["Cs", "Pb", "Br", "Br", "Br"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    atoms = AseAtomsAdaptor.get_atoms(structure)
    pseudos = get_pseudos(["Cs", "Pb", "Br"], "qe")
    params = qe_input_set(atoms, "static", "fast", pseudos, overrides={"kpts": [2, 2, 2]})
    write_pw_input(atoms, params, work, pseudo_dir_for(pseudos))
    return work / "espresso.pwi", pw_argv(atoms, params["kpts"])


def _time(argv: list[str], inp: Path, label: str) -> float:
    from perovflow.engines.process import run_command

    run_dir = inp.parent / label
    run_dir.mkdir(exist_ok=True)
    (run_dir / inp.name).write_text(inp.read_text())
    res = run_command([*argv, "-in", inp.name], run_dir, "pw.out", "pw.err")
    text = (run_dir / "pw.out").read_text()
    if res.returncode != 0 or "JOB DONE" not in text:
        raise SystemExit(f"{label} run failed:\n{res.tail(10)}")
    energy = re.search(r"!\s+total energy\s+=\s+(\S+)", text).group(1)
    print(f"  {label:10s} {res.walltime_s:7.2f} s   E = {energy} Ry   {' '.join(argv)}")
    return res.walltime_s


def _time_demo(name: str, env: dict[str, str], work: Path) -> float:
    """Wall time of one ``perovflow demo`` (fresh store; pseudopotentials converted already)."""
    import resource
    import shutil
    import subprocess
    import sys
    import time

    run_env = {k: v for k, v in os.environ.items() if not k.startswith("PEROVFLOW_")}
    home = work / f"demo-{name}"
    from perovflow.settings import get_settings

    settings = get_settings()  # the pseudopotentials _setup converted: set-up excluded
    shutil.copytree(
        settings.resolved(settings.project_dir) / "pseudos", home / "project" / "pseudos"
    )
    run_env |= {
        "PEROVFLOW_PROJECT_DIR": str(home / "project"),
        "PEROVFLOW_SCRATCH_DIR": str(home / "scratch"),
        "PEROVFLOW_CONFIG_FILE": str(home / "none.yaml"),
        "OMP_NUM_THREADS": "1",
        **env,
    }
    start, before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    argv = [
        str(Path(sys.executable).with_name("perovflow")),
        "demo",
        "-o",
        str(home / "out"),
        "--json",
    ]
    done = subprocess.run(argv, env=run_env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"demo with {name} launch failed:\n{done.stderr[-2000:]}")
    print(f"  demo {name:10s} {wall:7.1f} s wall, {cpu:7.1f} s CPU (all processes)")
    return wall


def _demo(ncores: int, work: Path) -> None:
    root = "--allow-run-as-root " if os.geteuid() == 0 else ""
    launches = {
        "serial": {"PEROVFLOW_PARALLEL__MPI_PREFIX": ""},
        "mpirun": {
            "PEROVFLOW_PARALLEL__MPI_PREFIX": f"mpirun {root}-np {ncores}",
            "PEROVFLOW_QE__NPOOL": "1",
        },
        "perovflow": {},
    }
    walls = {name: _time_demo(name, env, work) for name, env in launches.items()}
    print(f"\n{'main job wall (s)':22s}" + "".join(f"{walls[n]:14.1f}" for n in launches))
    print(
        f"main job: {walls['serial'] / walls['perovflow']:.2f}x faster than serial, "
        f"{walls['mpirun'] / walls['perovflow']:.2f}x vs plain mpirun -np {ncores}"
    )


def main() -> None:
    """Run the three launches in turn and print the best wall times side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--demo", action="store_true", help="also time the main job")
    parser.add_argument("--demo-only", action="store_true", help="only the main job (one round)")
    args = parser.parse_args()
    from perovflow.launch import available_cores

    ncores = available_cores()
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    with tempfile.TemporaryDirectory(prefix="bench-qe-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("PEROVFLOW_PROJECT_DIR", str(work / "project"))
        for key in [k for k in os.environ if k.startswith("PEROVFLOW_") and "PARALLEL" in k]:
            os.environ.pop(key)  # perovflow's defaults, nothing set by hand
        os.environ.pop("PEROVFLOW_QE__NPOOL", None)
        os.environ["OMP_NUM_THREADS"] = "1"
        inp, ours = _setup(work)
        commands = {
            "serial": ["pw.x"],
            "mpirun": ["mpirun", *root, "-np", str(ncores), "pw.x"],
            "perovflow": ours,
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        if args.demo_only:
            _demo(ncores, work)
            return
        for i in range(args.repeat):
            print(f"round {i + 1}")
            for name, argv in commands.items():
                times[name].append(_time(argv, inp, f"{name}{i}"))
        if args.demo:
            _demo(ncores, work)
    best = {name: min(t) for name, t in times.items()}
    print(f"\n{'':22s}" + "".join(f"{name:>14s}" for name in commands))
    print(f"{'best wall time (s)':22s}" + "".join(f"{best[n]:14.2f}" for n in commands))
    print(f"perovflow default: {' '.join(ours)}")
    print(
        f"speed-up of the default: {best['serial'] / best['perovflow']:.2f}x over serial, "
        f"{best['mpirun'] / best['perovflow']:.2f}x over plain mpirun -np {ncores}"
    )


if __name__ == "__main__":
    main()
