"""FR (ld1-fr-pbe) vs GTH-PBE on cubic CsPbBr3, and what SOC does to the gap.

Scalar-relativistic limit: pw.x with the FR potentials and ``lspinorb=.false.`` (pw.x averages
the j = l ± 1/2 channels) against the GTH family: E–V minimum (parabola through five
lattice constants) and the PBE gap at a = 5.87 Å; then PBE+SOC at a = 5.87 Å (gap and the
j=1/2 / j=3/2 splitting of the conduction band at R). 2x2x2 k, cutoff from the command line.

    python benchmarks/bench_fr_pseudos.py [ecutwfc_Ry=30]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ase import Atoms

from perovflow.engines.pseudos import get_pseudos, pseudo_dir_for
from perovflow.engines.qe.inputs import qe_input_set
from perovflow.engines.qe.run import band_edges, parse_pw_output, run_pw


def cubic(a: float) -> Atoms:
    """Cubic CsPbBr3 (Pm-3m), Pb at the cube centre."""
    frac = [(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
    return Atoms("CsPbBr3", scaled_positions=frac, cell=np.eye(3) * a, pbc=True)


def run(a: float, soc: bool, fr: bool, ecut: float, root: Path) -> dict:
    atoms = cubic(a)
    pseudos = get_pseudos(["Cs", "Pb", "Br"], "qe", soc=fr)
    over = {"kpts": [2, 2, 2], "ecutwfc": ecut, "ecutrho": 4 * ecut}
    params = qe_input_set(atoms, "static", "fast", pseudos, soc=soc, overrides=over)
    folder = root / f"{'fr' if fr else 'gth'}-{'soc' if soc else 'sr'}-{a:.3f}"
    start = time.perf_counter()
    run_pw(atoms, params, folder, pseudo_dir_for(pseudos))
    res = parse_pw_output(folder)
    edges = band_edges(res.eigenvalues, res.nelect, res.fermi_eV, noncolin=soc)
    k_r = int(np.argmax(np.linalg.norm(res.kpoints, axis=1)))  # R = (1/2, 1/2, 1/2)
    n_occ = int(res.nelect) if soc else int(res.nelect / 2)
    cb = res.eigenvalues[0][k_r][n_occ:]
    return {"E": res.energy_eV, "gap": edges.get("band_gap_eV"), "cb_R": cb,
            "s": time.perf_counter() - start}  # fmt: skip


def ev_minimum(lattice: list[float], energies: list[float]) -> float:
    """Lattice constant at the minimum of a parabola E(a) through the points."""
    c2, c1, _ = np.polyfit(lattice, energies, 2)
    return -c1 / (2 * c2)


def main() -> None:
    ecut = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    lattice = [5.75, 5.85, 5.95, 6.05, 6.15]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for fr in (False, True):
            e = [run(a, False, fr, ecut, root)["E"] for a in lattice]
            print(
                f"{'ld1-fr-pbe (SR limit)' if fr else 'gth-pbe':22s} a0 = {ev_minimum(lattice, e):.4f} Å"
            )
        sr, so = run(5.87, False, True, ecut, root), run(5.87, True, True, ecut, root)
        gth = run(5.87, False, False, ecut, root)
        print(
            f"gap a=5.87  gth-pbe {gth['gap']:.3f}  ld1-fr-pbe SR {sr['gap']:.3f}  "
            f"SOC {so['gap']:.3f} eV  (SOC lowers it by {sr['gap'] - so['gap']:.3f} eV)"
        )
        split = so["cb_R"][2] - so["cb_R"][0]
        print(
            f"SOC at R: CBM (j=1/2) to next level (j=3/2) {split:.3f} eV; "
            f"wall {so['s']:.0f} s (SR {sr['s']:.0f} s)"
        )


if __name__ == "__main__":
    main()
