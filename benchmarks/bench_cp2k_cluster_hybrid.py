"""CP2K PBE vs HSE06/ADMM (and PBE0/ADMM) on seed 001's "single molecule of Cs4PbBr6".

Seed 001 (Fig. 5c) computes one Cs4PbBr6 unit in isolation - an [PbBr6]4- octahedron with
four Cs+ - and finds the same HSE06+SOC gap (3.9 eV) as the crystal: the 0D phase is a
lattice of molecules. Here the unit is cut from the Cs4PbBr6 prototype (R-3c): the Pb, its
six Br and the four Cs nearest to the Pb (ties broken by distance, then by index; neutral
Cs4PbBr6, 11 atoms), solved as a cluster (wavelet Poisson solver, 6 Å of vacuum on each
side), OT. No spin-orbit coupling in CP2K: the gaps are scalar-relativistic HOMO-LUMO gaps.

Each run's result is appended to ``benchmarks/results/cp2k_cluster_hybrid.json`` as soon as
it finishes; a rerun skips what is there (resumable). The hybrids start from the PBE
wavefunction of the same atoms.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_cp2k_cluster_hybrid.py [protocol=standard]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from pymatgen.core import Molecule

from perovflow.structures.prototypes import build_prototype

RESULTS = Path(__file__).parent / "results" / "cp2k_cluster_hybrid.json"
WORK = Path(os.environ.get("BENCH_WORK", "/tmp/perovflow-bench-cp2k-cluster"))  # CP2K folders


def single_unit() -> Molecule:
    """Pb, its 6 Br and 4 of its nearest Cs in the Cs4PbBr6 prototype, centred on the Pb.

    Pb sits on an inversion centre with 2 Cs at 4.36 Å (on the 3-fold axis) and 6 at 4.59 Å:
    of the 4-Cs sets without a dipole (two inversion pairs) the closest is taken, i.e. the
    axial pair and one pair of the six (the lowest site index; the three are equivalent).
    """
    from itertools import combinations

    crystal = build_prototype("Cs4PbBr6", cell="primitive")
    pb = next(i for i, s in enumerate(crystal) if s.specie.symbol == "Pb")
    centre = crystal[pb].coords
    around = crystal.get_neighbors(crystal[pb], 6.5)
    br = sorted((n for n in around if n.specie.symbol == "Br"), key=lambda n: n.nn_distance)[:6]
    cs = sorted((n for n in around if n.specie.symbol == "Cs"), key=lambda n: n.nn_distance)[:8]

    def score(group: tuple) -> tuple[float, float, list[int]]:
        dipole = np.linalg.norm(sum(n.coords - centre for n in group))
        return (
            round(float(dipole), 3),
            round(sum(n.nn_distance for n in group), 3),
            [n.index for n in group],
        )

    best = min(combinations(cs, 4), key=score)
    sites = [crystal[pb], *br, *best]
    return Molecule([s.specie.symbol for s in sites], [s.coords - centre for s in sites])


def load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}


def save(results: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, RESULTS)


def run(xc: str, protocol: str, molecule: Molecule) -> dict:
    from perovflow.engines.cp2k.jobs import CP2KStaticMaker, run_cp2k_task

    prev = WORK / f"{protocol}-pbe"
    # OT for all three (a molecule with a wide gap; the hybrids' default, so PBE matches)
    maker = CP2KStaticMaker(
        protocol=protocol, xc=None if xc == "pbe" else xc, input_set_overrides={"scf": "ot"}
    )
    start = time.perf_counter()
    doc = run_cp2k_task(
        maker, molecule, None if xc == "pbe" else str(prev), WORK / f"{protocol}-{xc}"
    )
    return {
        "xc": xc,
        "protocol": protocol,
        "gap_eV": doc.electronic.band_gap_eV,
        "homo_eV": doc.electronic.vbm_eV,
        "lumo_eV": doc.electronic.cbm_eV,
        "energy_eV": doc.energy_eV,
        "wall_s": round(time.perf_counter() - start, 1),
        "natoms": len(molecule),
    }


def main() -> None:
    protocol = sys.argv[1] if len(sys.argv) > 1 else "standard"
    molecule = single_unit()
    results = load()
    d_br = sorted(np.linalg.norm(molecule.cart_coords[1:7], axis=1))
    d_cs = sorted(np.linalg.norm(molecule.cart_coords[7:], axis=1))
    results["unit"] = {"formula": molecule.composition.formula, "Pb-Br_A": [round(float(d), 3) for d in d_br],
                       "Pb-Cs_A": [round(float(d), 3) for d in d_cs]}  # fmt: skip
    save(results)
    for xc in ("pbe", "hse06", "pbe0"):
        key = f"{protocol}-{xc}"
        if key in results:
            continue
        results[key] = run(xc, protocol, molecule)
        save(results)
        print(json.dumps(results[key]), flush=True)


if __name__ == "__main__":
    main()
