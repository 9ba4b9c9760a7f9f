"""Benchmark: pw.x cutoff series of rock-salt NaCl with the built-in family (Na: ld1-sr-pbe).

The 2-atom primitive cell of the ``NaCl`` prototype (experimental 5.64 Å), rattled by 0.03 Å
(fixed seed, so forces are not zero by symmetry), ``standard`` protocol (PBE-D3) except the
cutoffs and a fixed k spacing of 0.5 Å⁻¹ (4×4×4; at the symmetric cell 6×6×6 changes the
pressure by 0.2 kbar). Each point is compared with the last (most converged) one:
energy per atom, largest force component, pressure (:func:`perovflow.engines.convergence.compare`),
and the cheapest cutoff within 1 meV/atom, 5 meV/Å and 0.5 kbar is printed.

Resumable: each finished point is appended to ``benchmarks/results/na_cutoff.json``::

    PEROVFLOW_PARALLEL__RANKS=1 OMP_NUM_THREADS=1 nohup nice -n 10 \
        .venv/bin/python benchmarks/bench_na_cutoff.py >> benchmarks/results/na_cutoff.log 2>&1 &
    .venv/bin/python benchmarks/bench_na_cutoff.py --table      # the README table
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "na_cutoff.json"
CUTOFFS = [60, 80, 100, 120, 140, 160, 200]  # Ry, ecutrho = 4 ecutwfc
TOLERANCES = {"dE_meV_atom": 1.0, "dF_meV_A": 5.0, "dP_kbar": 0.5}


def run_point(cutoff: float, work: Path) -> dict:
    """One static pw.x run of the rattled primitive NaCl at ``cutoff``."""
    from perovflow.engines.convergence import rattled, run_series
    from perovflow.structures.prototypes import build_prototype

    cell = rattled(build_prototype("NaCl", cell="primitive"), 0.03)
    (row,) = run_series(cell, "qe", "ecutwfc", [cutoff], work, protocol="standard",
                        fixed={"kspacing": 0.5})  # fmt: skip
    row["forces"] = None if row["forces"] is None else [list(map(float, f)) for f in row["forces"]]
    return row


def table(rows: list[dict]) -> str:
    """Markdown table of the differences against the last point, and the cheapest cutoff."""
    from perovflow.engines.convergence import cheapest, compare

    tab = compare(rows)
    out = ["| ecutwfc (Ry) | ΔE (meV/atom) | ΔF (meV/Å) | ΔP (kbar) |", "| --- | --- | --- | --- |"]
    for r in tab:
        out.append(f"| {r['value']:g} | {r['dE_meV_atom']:+.1f} | {r['dF_meV_A']:.1f} | "
                   f"{r['dP_kbar']:+.2f} |")  # fmt: skip
    out.append(f"cheapest within {TOLERANCES}: {cheapest(tab, TOLERANCES)} Ry")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/perovflow-bench-na-cutoff"))
    parser.add_argument("--table", action="store_true", help="print the table and stop")
    args = parser.parse_args()
    rows = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    if not args.table:
        for cutoff in CUTOFFS:
            if any(r["value"] == cutoff for r in rows):
                continue
            rows.append(run_point(cutoff, args.work))
            rows.sort(key=lambda r: r["value"])
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            tmp = RESULTS.with_suffix(".tmp")
            tmp.write_text(json.dumps(rows, indent=1))
            tmp.replace(RESULTS)
            done = next(r for r in rows if r["value"] == cutoff)
            print(f"{cutoff} Ry: E/atom {done['energy_per_atom_eV']:.5f} eV", flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
