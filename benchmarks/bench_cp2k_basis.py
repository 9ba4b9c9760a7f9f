"""Benchmark: the CP2K basis (DZVP vs TZVP MOLOPT-SR) against the QE plane-wave gap.

Cubic CsPbBr3 (a = 5.87 Å, the structure of the cross-code test, not rattled), the
Γ-centred 2x2x2 grid (it contains R, where the gap is direct), the same GTH cores in both
codes. Rows: QE at the ``standard`` cutoff (80/320 Ry), the reference; CP2K with each basis
(``--basis``, default DZVP and TZVP) at the cutoff given (``--cutoff``, Ry, REL_CUTOFF =
cutoff/4) or at a protocol's own CUTOFF/REL_CUTOFF and other settings (``--protocol``; the
``standard`` protocol's other settings otherwise). The short-range TZVP sets are read from
BASIS_MOLOPT_UCL. Each row prints the gap and its difference to QE.

Resumable: every finished row is appended to ``benchmarks/results/cp2k_basis.json`` and
skipped when the script runs again. Run (nice'd, 1 thread, about 5 min on 2 free cores)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_cp2k_basis.py --cutoff 400
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_cp2k_basis.py \
        --protocol fast --basis TZVP-MOLOPT-SR-GTH
    .venv/bin/python benchmarks/bench_cp2k_basis.py --table      # the README table
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


def cutoffs(protocol: str | None, cutoff_ry: float) -> tuple[str, float, float]:
    """(protocol the CP2K maker runs, CUTOFF, REL_CUTOFF in Ry) of one benchmark call."""
    if protocol is None:
        return "standard", cutoff_ry, cutoff_ry / 4
    from perovflow.engines.protocols import get_protocol

    proto = get_protocol(protocol, "cp2k")
    return protocol, proto["cutoff_eV"] / RY_EV, proto["rel_cutoff_eV"] / RY_EV


def run_qe(work: Path) -> dict:
    """The reference: QE plane waves at the ``standard`` cutoff."""
    from perovflow.engines.qe.jobs import QEStaticMaker, run_qe_task

    maker = QEStaticMaker(protocol="standard", input_set_overrides={"kpts": [2, 2, 2]})
    return _row("qe", None, None, None, run_qe_task(maker, cell(), None, work / "qe"))


def run_cp2k(basis: str, protocol: str, cut: float, rel: float, work: Path) -> dict:
    """One CP2K scf with ``basis`` at CUTOFF ``cut`` / REL_CUTOFF ``rel`` (Ry)."""
    from perovflow.engines.cp2k.jobs import CP2KStaticMaker, run_cp2k_task

    overrides = {
        "basis": basis, "basis_files": ["BASIS_MOLOPT_UCL"], "kpoints": [2, 2, 2],
        "cutoff_eV": cut * RY_EV, "rel_cutoff_eV": rel * RY_EV,
    }  # fmt: skip
    maker = CP2KStaticMaker(protocol=protocol, input_set_overrides=overrides)
    folder = work / f"{basis}-{protocol}-{cut:g}"
    return _row(basis, protocol, cut, rel, run_cp2k_task(maker, cell(), None, folder))


def _row(label: str, protocol: str | None, cut: float | None, rel: float | None, doc) -> dict:
    return {
        "label": label,
        "protocol": protocol,
        "cutoff_ry": None if cut is None else round(cut, 3),
        "rel_cutoff_ry": None if rel is None else round(rel, 3),
        "gap_eV": doc.electronic.band_gap_eV,
        "direct": doc.electronic.is_direct,
        "energy_per_atom_eV": doc.energy_per_atom_eV,
        "walltime_s": doc.walltime_s,
    }


def _key(row: dict) -> tuple:
    """Identity of a row; rows of the first version ran ``standard`` at REL_CUTOFF = cutoff/4."""
    if row["label"] == "qe":
        return ("qe",)
    cut = row["cutoff_ry"]
    rel = row.get("rel_cutoff_ry") or cut / 4
    return (row["label"], row.get("protocol") or "standard", round(cut, 1), round(rel, 1))


def save(rows: list[dict]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    tmp.replace(RESULTS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cutoff", type=float, default=400.0, help="CP2K CUTOFF (Ry)")
    parser.add_argument("--protocol", default=None, help="use this protocol's CP2K cutoffs")
    parser.add_argument("--basis", default=",".join(BASES), help="comma-separated bases")
    parser.add_argument("--table", action="store_true", help="print the table and stop")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    protocol, cut, rel = cutoffs(args.protocol, args.cutoff)
    work = Path(tempfile.mkdtemp(prefix="bench-cp2k-basis-"))
    for basis in [] if args.table else ["qe", *args.basis.split(",")]:
        key = ("qe",) if basis == "qe" else (basis, protocol, round(cut, 1), round(rel, 1))
        if key in {_key(r) for r in rows}:
            continue
        rows.append(run_qe(work) if basis == "qe" else run_cp2k(basis, protocol, cut, rel, work))
        save(rows)
    print(table(rows))


def table(rows: list[dict]) -> str:
    """Markdown table: gap of each row and its difference to the QE reference."""
    qe = next(r for r in rows if r["label"] == "qe")
    out = ["| basis | CUTOFF / REL_CUTOFF (Ry) | gap (eV) | gap − QE (eV) | wall (s) |",
           "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in rows:
        if r["label"] == "qe":
            name, cut = "QE plane waves", "80/320 (QE `standard`)"
        else:
            _, proto, c, rel = _key(r)
            name, cut = r["label"], f"{c:.0f} / {rel:.0f} (`{proto}`)"
        out.append(f"| {name} | {cut} | {r['gap_eV']:.3f} | {r['gap_eV'] - qe['gap_eV']:+.3f} "
                   f"| {r['walltime_s']:.0f} |")  # fmt: skip
    return "\n".join(out)


if __name__ == "__main__":
    main()
