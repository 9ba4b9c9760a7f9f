"""Benchmark: CP2K CUTOFF series on cubic CsPbBr3 with the analytical stress switched on.

``perovflow converge --code cp2k`` measures energy, forces and gap per CUTOFF (REL_CUTOFF
tied at CUTOFF/4) but a CP2K ENERGY_FORCE run prints no stress; this script runs the same
series (:func:`perovflow.engines.convergence.run_series`, same rattled cell, ``fast``
protocol's 2x2x2 grid, DZVP-MOLOPT-SR) with ``STRESS_TENSOR ANALYTICAL`` so that the
pressure column is measured too, and prints the table in the README's format.

Writes ``benchmarks/results/cp2k_cutoff.json`` (the rows, then the comparison). Run::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_cp2k_cutoff.py \
        --cutoffs 200,300,400,600,800 [--basis TZVP-MOLOPT-SR-GTH]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "cp2k_cutoff.json"
STRESS = {"FORCE_EVAL": {"STRESS_TENSOR": "ANALYTICAL", "PRINT": {"STRESS_TENSOR ON": {}}}}


def main() -> None:
    from perovflow.engines.convergence import compare, rattled, run_series
    from perovflow.structures.io import load_structure

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cutoffs", default="200,300,400,600,800")
    parser.add_argument("--basis", default=None, help="CP2K basis (default: the protocol's)")
    args = parser.parse_args()
    values = [float(v) for v in args.cutoffs.split(",")]
    fixed = {**STRESS, **({"basis": args.basis} if args.basis else {})}
    cell = rattled(load_structure("CsPbBr3-cubic"), 0.03)
    work = Path(tempfile.mkdtemp(prefix="bench-cp2k-cutoff-"))
    rows = run_series(cell, "cp2k", "ecutwfc", values, work, protocol="fast", fixed=fixed)
    table = compare(rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    out = {"basis": args.basis or "protocol", "rows": rows, "table": table}
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1, default=float))
    tmp.replace(RESULTS)
    print("| CUTOFF (Ry) | ΔE (meV/atom) | ΔF (meV/Å) | ΔP (kbar) | Δgap (eV) | wall (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in table:
        print(f"| {r['value']:g} | {r['dE_meV_atom']} | {r['dF_meV_A']} | {r['dP_kbar']} "
              f"| {r['dgap_eV']} | {r['walltime_s']} |")  # fmt: skip


if __name__ == "__main__":
    main()
