"""Benchmark: the CP2K basis (DZVP vs TZVP MOLOPT-SR) against the QE plane-wave gap.

Cubic CsPbBr3 (a = 5.87 Å, the structure of the cross-code test, not rattled), the
Γ-centred 2x2x2 grid (it contains R, where the gap is direct), the same GTH cores in both
codes. Rows: QE at the ``standard`` cutoff (80/320 Ry), the reference; CP2K at the cutoff
given (``--cutoff``, Ry, REL_CUTOFF = cutoff/4) with each basis. Each row prints the gap and
its difference to QE, and the total energy per atom against the largest basis.

Resumable: every finished row is appended to ``benchmarks/results/cp2k_basis.json`` and
skipped when the script runs again. Run (nice'd, 1 thread, about 5 min on 2 free cores)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_cp2k_basis.py --cutoff 400
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from pymatgen.core import Lattice, Structure

RESULTS = Path(__file__).parent / "results" / "cp2k_basis.json"
RY_EV = 13.605693122994
BASES = ("DZVP-MOLOPT-SR-GTH", "TZVP-MOLOPT-SR-GTH")


def cell() -> Structure:
    return Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(5.87), ["Cs", "Pb", "Br"], [[0, 0, 0], [0.5] * 3, [0, 0.5, 0.5]]
    )


def run_row(label: str, cutoff_ry: float, work: Path) -> dict:
    """One scf: ``qe`` (standard protocol cutoff) or a CP2K basis name."""
    folder = work / label
    if label == "qe":
        from perovflow.engines.qe.jobs import QEStaticMaker, run_qe_task

        maker = QEStaticMaker(protocol="standard", input_set_overrides={"kpts": [2, 2, 2]})
        doc = run_qe_task(maker, cell(), None, folder)
    else:
        from perovflow.engines.cp2k.jobs import CP2KStaticMaker, run_cp2k_task

        maker = CP2KStaticMaker(
            protocol="standard",
            input_set_overrides={
                "basis": label, "kpoints": [2, 2, 2],
                "cutoff_eV": cutoff_ry * RY_EV, "rel_cutoff_eV": cutoff_ry / 4 * RY_EV,
            },
        )  # fmt: skip
        doc = run_cp2k_task(maker, cell(), None, folder)
    return {
        "label": label,
        "cutoff_ry": None if label == "qe" else cutoff_ry,
        "gap_eV": doc.electronic.band_gap_eV,
        "direct": doc.electronic.is_direct,
        "energy_per_atom_eV": doc.energy_per_atom_eV,
        "walltime_s": doc.walltime_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cutoff", type=float, default=400.0, help="CP2K CUTOFF (Ry)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    done = {(r["label"], r["cutoff_ry"]) for r in rows}
    work = Path(tempfile.mkdtemp(prefix="bench-cp2k-basis-"))
    for label in ("qe", *BASES):
        key = (label, None if label == "qe" else args.cutoff)
        if key in done:
            continue
        rows.append(run_row(label, args.cutoff, work))
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        tmp = RESULTS.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=1))
        tmp.replace(RESULTS)
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    qe = next(r for r in rows if r["label"] == "qe")
    print("| basis | CUTOFF (Ry) | gap (eV) | gap − QE (eV) | wall (s) |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        cut = "80/320 (QE `standard`)" if r["label"] == "qe" else f"{r['cutoff_ry']:g}"
        name = "QE plane waves" if r["label"] == "qe" else r["label"]
        print(f"| {name} | {cut} | {r['gap_eV']:.3f} | {r['gap_eV'] - qe['gap_eV']:+.3f} "
              f"| {r['walltime_s']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
