"""pw.x wall time: perovflow's parallel defaults vs plain ``mpirun -np 2 pw.x`` (same input).

Both runs use the same ``espresso.pwi`` (cubic CsPbBr3, 5 atoms, fast protocol, 25 Ry,
2x2x2 k grid: 4 irreducible k-points) and 2 MPI ranks with OMP_NUM_THREADS=1. The baseline
is the plain command; perovflow's command comes from :func:`pw_argv` with the settings
``mpi_prefix="mpirun -np 2"`` and no pool setting, so the code picks ``-nk`` from the
irreducible k-points (here ``-nk 2``: k-point parallelism instead of plane-wave
distribution, which is faster for small cells). Each is run ``--repeat`` times
alternately; the best time of each is printed side by side.

Run: ``.venv/bin/python benchmarks/bench_qe_parallel.py [--repeat 2]``
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
    from perovflow.engines.qe.calc import pw_argv, write_pw_input
    from perovflow.engines.qe.inputs import qe_input_set

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
    from perovflow.engines.runner import run_command

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


def main() -> None:
    """Run both commands alternately and print the best wall times side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-qe-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("PEROVFLOW_PROJECT_DIR", str(work / "project"))
        os.environ["PEROVFLOW_QE__PARALLEL"] = '{"mpi_prefix": "mpirun -np 2"}'
        os.environ["OMP_NUM_THREADS"] = "1"
        if os.geteuid() == 0:  # containers: Open MPI refuses root unless told (both runs alike)
            os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
            os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        os.environ.pop("PEROVFLOW_QE__NPOOL", None)
        inp, ours = _setup(work)
        baseline = ["mpirun", "-np", "2", "pw.x"]
        times: dict[str, list[float]] = {"baseline": [], "perovflow": []}
        for i in range(args.repeat):
            print(f"round {i + 1}")
            times["baseline"].append(_time(baseline, inp, f"baseline{i}"))
            times["perovflow"].append(_time(ours, inp, f"perovflow{i}"))
    best_b, best_p = min(times["baseline"]), min(times["perovflow"])
    print(f"\n{'':24s}{'plain mpirun -np 2':>20s}{'perovflow defaults':>20s}")
    print(f"{'best wall time (s)':24s}{best_b:20.2f}{best_p:20.2f}")
    print(f"{'command':24s}{'pw.x':>20s}{' '.join(ours[3:]):>20s}")
    print(f"speed-up: {best_b / best_p:.2f}x")


if __name__ == "__main__":
    main()
