"""The failing case behind "CP2K stays on perovflow's writer" (README, atomate2 table).

Builds the CP2K cluster test's input (Cs4PbBr6 cluster, 11 atoms, wavelet Poisson solver,
one ``&LDOS`` per atom, cp2k-data's MOLOPT basis and GTH potentials by name) with
``pymatgen.io.cp2k.sets.DftSet`` (what ``atomate2.cp2k`` builds on) and prints what it
wrote: ``POTENTIAL_FILE_NAME None`` (cp2k.psmp then aborts: "The specified OLD file <None>
cannot be opened"), the cell periodicity and the Poisson section. With ``--run`` it also
runs cp2k.psmp on the input (minutes).

Run: ``.venv/bin/python benchmarks/try_pymatgen_cp2k.py [--run]``
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path
from typing import Any

VALENCE = {"Pb": 4, "Br": 7, "Cs": 9}


def cluster() -> Any:
    """The Cs4PbBr6 cluster of tests/engines/test_cp2k_run.py."""
    from pymatgen.core import Molecule

    d, e = 3.0, 2.5
    xyz = [(0, 0, 0), (d, 0, 0), (-d, 0, 0), (0, d, 0), (0, -d, 0), (0, 0, d), (0, 0, -d)]
    xyz += [(e, e, e), (-e, -e, e), (-e, e, -e), (e, -e, -e)]
    return Molecule(["Pb"] + ["Br"] * 6 + ["Cs"] * 4, xyz)


def main() -> None:
    """Write the input with pymatgen and show the lines that decide the outcome."""
    from pymatgen.io.cp2k.sets import DftSet

    parser = argparse.ArgumentParser()
    parser.add_argument("--run", action="store_true", help="also run cp2k.psmp")
    args = parser.parse_args()
    names = {
        el: {"basis": f"DZVP-MOLOPT-SR-GTH-q{n}", "potential": f"GTH-PBE-q{n}",
             "basis_filename": "BASIS_MOLOPT", "potential_filename": "GTH_POTENTIALS"}
        for el, n in VALENCE.items()
    }  # fmt: skip
    box = cluster().get_boxed_structure(16, 16, 16)
    dft = DftSet(box, project_name="t", basis_and_potential=names, xc_functionals=["PBE"],
                 cutoff=103, rel_cutoff=22)  # fmt: skip
    dft.activate_nonperiodic(solver="WAVELET")
    dft.print_ldos()
    folder = Path(tempfile.mkdtemp(prefix="pmg-cp2k-"))
    dft.write_file("cp2k.inp", str(folder))
    text = (folder / "cp2k.inp").read_text()
    for key in ("POTENTIAL_FILE_NAME", "POISSON_SOLVER", "PERIODIC"):
        print(*[line.strip() for line in text.splitlines() if key in line], sep="\n")
    print("LDOS sections:", text.count("&LDOS"), "for", len(box), "atoms")
    if args.run:
        out = subprocess.run(["cp2k.psmp", "-i", "cp2k.inp"], cwd=folder, capture_output=True,
                             text=True, check=False)  # fmt: skip
        print("exit", out.returncode, *[ln for ln in out.stdout.splitlines() if "OLD file" in ln])


if __name__ == "__main__":
    main()
