"""Benchmark: relaxed lattices of the seed systems' prototypes (QE vc-relax, ``standard``).

Each prototype of ``structures/prototypes.yaml`` (primitive cell) is relaxed, cell included
(pw.x vc-relax, BFGS, the ``standard`` protocol: PBE-D3, 80/320 Ry, 0.2 Å⁻¹, 0.02 eV/Å,
0.5 kbar, shipped GTH family), small cells first. The table gives the conventional-cell
lattice (pymatgen's standard setting) beside the experimental one of the prototype file and
a published PBE value where one is listed in :data:`PUBLISHED_PBE` (plain PBE, no D3: the
D3 attraction contracts the lattice against plain PBE, so the two columns are not the same
quantity; no D3 reference is quoted). A prototype whose pw.x run stops is recorded with its
error and left out of the table (``failed`` lists it); it is not retried.

Resumable: each finished cell is appended to ``benchmarks/results/lattices.json``; an
unfinished one restarts from its last geometry (the run folder is kept under ``--work``).
Run in the background, nice'd (on an oversubscribed machine one MPI rank: MPI ranks that
spin-wait for a core are slower than one)::

    PEROVFLOW_PARALLEL__RANKS=1 OMP_NUM_THREADS=1 nohup nice -n 10 \
        .venv/bin/python benchmarks/bench_lattices.py >> benchmarks/results/lattices.log 2>&1 &
    .venv/bin/python benchmarks/bench_lattices.py --table      # the README table
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "lattices.json"
#: small cells first (atoms in the primitive cell in brackets)
ORDER = [
    "CsBr", "CsCl", "NaCl", "AgCl", "Pb", "Cs", "Na", "Ag",  # 1-2
    "CsPbBr3-cubic", "CsPbI3-cubic", "Bi", "Sn",  # 2-5
    "Cs2NaBiCl6", "Cs2AgBiCl6", "Cs2PbI2Cl2", "Br2", "Cl2", "I2",  # 4-10
    "PbBr2", "FASnI3", "CsPb2Br5", "CsPbBr3-ortho", "Cs4PbBr6", "Pb4S3Br2",  # 12-36
]  # fmt: skip
#: plain-PBE lattice constants (Å) from the literature
PUBLISHED_PBE = {
    "CsPbBr3-cubic": ("5.99-6.01", "Ghaithan et al., Crystals 10, 342 (2020)"),
    "NaCl": ("5.70", "Haas, Tran, Blaha, PRB 79, 085104 (2009)"),
    "Na": ("4.20", "Haas, Tran, Blaha, PRB 79, 085104 (2009)"),
    "Ag": ("4.15", "Haas, Tran, Blaha, PRB 79, 085104 (2009)"),
    "Pb": ("5.04", "Haas, Tran, Blaha, PRB 79, 085104 (2009)"),
}


def conventional(structure_dict: dict) -> dict:
    """a, b, c (Å), angles and volume per atom of the conventional standard cell."""
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    s = Structure.from_dict(structure_dict)
    conv = SpacegroupAnalyzer(s, symprec=1e-2).get_conventional_standard_structure()
    lat = conv.lattice
    return {"abc": [round(x, 4) for x in lat.abc], "angles": [round(x, 3) for x in lat.angles],
            "volume_per_atom": round(s.volume / len(s), 4),
            "spacegroup": SpacegroupAnalyzer(s, symprec=1e-2).get_space_group_symbol()}  # fmt: skip


def relax(name: str, work: Path, start_file: Path | None = None) -> dict:
    """vc-relax of the primitive prototype (restarting from an earlier run's folder, or from
    ``start_file``: a structure an earlier, lost run reached; the reference stays the
    prototype)."""
    from pymatgen.core import Structure

    from perovflow.engines.qe.jobs import QERelaxMaker, run_qe_task
    from perovflow.structures.prototypes import build_prototype

    reference = build_prototype(name, cell="primitive")
    start = Structure.from_file(start_file) if start_file else reference
    runs = sorted((work / name).glob("run*"), key=lambda p: int(p.name[3:]))
    prev = next((str(r) for r in reversed(runs) if (r / "espresso.pwo").is_file()), None)
    folder = work / name / f"run{len(runs) + 1}"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    doc = run_qe_task(QERelaxMaker(protocol="standard", relax_cell=True), start, prev, folder)
    return {
        "name": name,
        "natoms": len(start),
        "converged": doc.converged,
        "experimental": conventional(reference.as_dict()),
        **({"start": start_file.name} if start_file else {}),
        "relaxed": conventional(doc.structure),
        "stress_GPa": doc.stress_GPa,
        "wall_s": round(time.time() - t0, 1),
        "settings": _settings(doc.input_parameters),
    }


def _settings(params: dict) -> dict:
    """The cutoffs (Ry) and k grid a row was computed with (the protocol changes over time)."""
    system = params.get("input_data", {}).get("system", {})
    return {"ecutwfc_Ry": system.get("ecutwfc"), "ecutrho_Ry": system.get("ecutrho"),
            "kpts": params.get("kpts")}  # fmt: skip


def relax_or_record(name: str, work: Path, start_file: Path | None = None) -> dict:
    """:func:`relax`, or a row naming the error when pw.x stops (kept: not retried)."""
    from perovflow.errors import EngineError

    try:
        return relax(name, work, start_file)
    except EngineError as err:
        print(f"{name} failed: {err.problem}", flush=True)
        return {"name": name, "error": err.problem.split("; last output")[0][-300:]}


def failed(rows: list[dict]) -> str:
    """One line per prototype whose relaxation stopped with an error."""
    return "\n".join(f"{r['name']}: {r['error']}" for r in rows if "error" in r)


def table(rows: list[dict]) -> str:
    out = ["| prototype | atoms | a, b, c exp. (Å) | a, b, c PBE-D3 here (Å) | ΔV/V | "
           "PBE, published (Å) |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in (r for r in rows if "error" not in r):
        exp, rel = r["experimental"], r["relaxed"]
        dv = rel["volume_per_atom"] / exp["volume_per_atom"] - 1
        pub = PUBLISHED_PBE.get(r["name"], ("—", ""))
        ref = f"{pub[0]} ({pub[1]})" if pub[1] else pub[0]
        flag = "" if r["converged"] else " (not converged)"
        out.append(f"| {r['name']}{flag} | {r['natoms']} | {_abc(exp['abc'])} | "
                   f"{_abc(rel['abc'])} | {dv:+.1%} | {ref} |")  # fmt: skip
    return "\n".join(out)


def _abc(abc: list[float]) -> str:
    return ", ".join(f"{x:.3f}" for x in dict.fromkeys(abc))


def _append(row: dict) -> list[dict]:
    """Add ``row`` to the results file as it is on disk now (another run may have added rows
    since this one started), atomically; returns all rows."""
    rows = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    rows = [r for r in rows if r["name"] != row["name"]] + [row]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    tmp.replace(RESULTS)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/perovflow-bench-lattices"))
    parser.add_argument("--only", default=None, help="comma-separated prototype names")
    parser.add_argument("--table", action="store_true", help="print the table and stop")
    parser.add_argument("--start", action="append", default=[], metavar="NAME=FILE",
                        help="start NAME from this structure file (pymatgen JSON or POSCAR: a CIF "
                             "loses the orientation)")  # fmt: skip
    args = parser.parse_args()
    starts = {k: Path(v) for k, v in (item.split("=", 1) for item in args.start)}
    rows = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    if not args.table:
        names = args.only.split(",") if args.only else ORDER
        for name in names:
            if any(r["name"] == name for r in rows):
                continue
            print(f"{time.strftime('%H:%M:%S')} {name} ...", flush=True)
            rows = _append(relax_or_record(name, args.work, starts.get(name)))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    print(failed(rows))


if __name__ == "__main__":
    main()
