"""Seed 001's numbers: HSE06+SOC static of Cs4PbBr6 and Cs4PbBr6 + V_Br on the PBE geometry.

Cells: the 22-atom rhombohedral primitive cell of ``Cs4PbBr6`` (the prototype, a PBE-relaxed
database entry, used as is) and the same cell with one Br removed (21 atoms, neutral), its
atoms relaxed with PBE (CHGNet pre-relax, then pw.x, GTH-PBE, spin-polarised, fixed cell).

Steps, each in its own folder under ``benchmarks/results/hse_soc/`` and recorded in
``results.json`` when done (rerunning the script skips finished steps: resumable):

``host_pbe_soc`` / ``vbr_pbe_soc``
    PBE+SOC static (ld1-fr-pbe, noncolin + lspinorb), projected (projwfc.x on the scf).
``host_hse_soc`` / ``vbr_hse_soc``
    HSE06+SOC static restarted from the PBE+SOC wavefunctions, projected.
``host_pbe`` / ``vbr_pbe``
    PBE without SOC (GTH, spin-polarised for the odd V_Br cell), projected: perovflow's PBE.

Cheapest settings that stay meaningful: 25 Ry (340 eV) wavefunction cutoff, 100 Ry density,
Γ-only k, Γ-only Fock grid (nqx = 1), ecutfock = ecutwfc = 25 Ry (pw.x's minimum). The odd
V_Br cell with SOC runs non-magnetic (time-reversal symmetric): its unpaired electron half
fills a Kramers pair (occupation 0.5 each), whose energy is the level reported.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_hse_soc.py [--table]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "hse_soc"
ECUT_RY = 25.0
RY_EV = 13.605693122994
SEED = {"gap_eV": 3.9, "level_above_vbm_eV": 2.4}
COMMON = {"kpts": [1, 1, 1], "ecutwfc": ECUT_RY, "ecutrho": 4 * ECUT_RY}
HYBRID = {"xc": "hse06", "nqx": 1, "ecutfock_eV": ECUT_RY * RY_EV}


def cells() -> dict[str, Any]:
    """The host primitive cell and the unrelaxed V_Br cell (pymatgen Structures)."""
    from perovflow.structures.defects import enumerate_vacancies
    from perovflow.structures.io import load_structure

    host = load_structure("Cs4PbBr6", cell="primitive")
    vbr = host.copy()
    vbr.remove_sites([enumerate_vacancies(host, "Br")[0].index])
    return {"host": host, "vbr": vbr}


def load() -> dict[str, Any]:
    path = RESULTS / "results.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def save(results: dict[str, Any]) -> None:
    """Write ``results.json`` atomically."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, RESULTS / "results.json")


def relax_vbr(vbr: Any) -> Any:
    """CHGNet pre-relax, then pw.x PBE relax (atoms only, fmax 0.1 eV/Å)."""
    from perovflow.engines.qe.jobs import QERelaxMaker, run_qe_task
    from perovflow.structures.io import from_atoms

    path = RESULTS / "vbr_geometry.json"
    if path.is_file():
        from pymatgen.core import Structure

        return Structure.from_dict(json.loads(path.read_text()))
    from ase.optimize import BFGS

    from perovflow.engines.mlip.calculator import get_mlip_calculator
    from perovflow.structures.io import to_atoms

    atoms = to_atoms(vbr)
    atoms.calc = get_mlip_calculator()
    BFGS(atoms, logfile=str(RESULTS / "vbr_chgnet.log")).run(fmax=0.05, steps=200)
    maker = QERelaxMaker(protocol="fast", defect=True, input_set_overrides=dict(COMMON))
    doc = run_qe_task(maker, from_atoms(atoms), None, RESULTS / "vbr_relax")
    relaxed = doc.structure
    from pymatgen.core import Structure

    structure = Structure.from_dict(relaxed) if isinstance(relaxed, dict) else relaxed
    path.write_text(json.dumps(structure.as_dict()))
    return structure


def run_step(name: str, structure: Any, results: dict, prev: str | None, **fields: Any) -> None:
    """One projected static (skipped when already in ``results`` with the same
    pseudopotentials: a changed ld1.x recipe or potential file reruns it)."""
    from perovflow.engines.fingerprint import pseudo_checksums

    pseudos = pseudo_checksums("qe", structure.symbol_set, bool(fields.get("soc")))
    if name in results and results[name].get("pseudopotentials") == pseudos:
        return
    from perovflow.engines.qe.jobs import QEStaticMaker, run_qe_task
    from perovflow.workflows.hybrid import cell_summary

    maker = QEStaticMaker(
        protocol="fast", projwfc=True, defect=name.startswith("vbr"),
        input_set_overrides=dict(COMMON), **fields,
    )  # fmt: skip
    start = time.perf_counter()
    doc = run_qe_task(maker, structure, prev, RESULTS / name)
    summary = cell_summary(doc)
    summary.update(wall_s=round(time.perf_counter() - start, 1), pw_walltime_s=doc.walltime_s,
                   restart=[r.handler for r in doc.recovery], settings={**COMMON, **fields},
                   pseudopotentials=pseudos)  # fmt: skip
    results[name] = summary
    save(results)
    print(name, json.dumps({k: v for k, v in summary.items() if k != "settings"}), flush=True)


def resummarise(results: dict[str, Any]) -> None:
    """Recompute every finished step's level summary from its stored pw.x/projwfc.x outputs
    with the current analysis code (no DFT run); wall times and settings are kept."""
    from perovflow.analysis.ipr import analyze_ipr
    from perovflow.engines.qe.projwfc import parse_projwfc
    from perovflow.workflows.hybrid import spinor_level

    for name, entry in results.items():
        folder = RESULTS / name
        if (folder / "projwfc.out").is_file():
            proj = parse_projwfc(folder, folder / "espresso.pwo")
            entry.update(spinor_level(analyze_ipr(proj).states))
    save(results)


def table(results: dict[str, Any]) -> str:
    """The README table (Markdown) from ``results.json``."""
    rows = ["| run | host gap (eV) | V_Br level above VBM (eV) | level below CBM (eV) | "
            "level IPR | wall host/V_Br (s) |", "| --- | --- | --- | --- | --- | --- |",
            f"| seed 001 (HSE06+SOC) | {SEED['gap_eV']} | {SEED['level_above_vbm_eV']} | – | – "
            "| – |"]  # fmt: skip
    for label, host, vbr in (
        ("PBE (GTH)", "host_pbe", "vbr_pbe"),
        ("PBE+SOC (ld1-fr-pbe)", "host_pbe_soc", "vbr_pbe_soc"),
        ("HSE06+SOC (ld1-fr-pbe)", "host_hse_soc", "vbr_hse_soc"),
    ):
        h, v = results.get(host, {}), results.get(vbr, {})
        wall = "/".join(str(round(x["wall_s"])) for x in (h, v) if x.get("wall_s"))
        rows.append(
            f"| {label} | {_num(h.get('band_gap_eV'))} | {_num(v.get('level_above_vbm_eV'))} | "
            f"{_num(v.get('level_below_cbm_eV'))} | {_num(v.get('level_ipr'))} | {wall} |"
        )
    return "\n".join(rows)


def _num(value: float | None) -> str:
    return "not finished" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the README table only")
    parser.add_argument("--resummarise", action="store_true",
                        help="recompute the levels of finished steps from their outputs")  # fmt: skip
    args = parser.parse_args()
    results = load()
    if args.resummarise:
        resummarise(results)
    if args.table:
        print(table(results))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    c = cells()
    run_step("host_pbe_soc", c["host"], results, None, soc=True)
    run_step("host_hse_soc", c["host"], results, str(RESULTS / "host_pbe_soc"), soc=True, **HYBRID)
    vbr = relax_vbr(c["vbr"])
    run_step("vbr_pbe_soc", vbr, results, None, soc=True)
    run_step("vbr_hse_soc", vbr, results, str(RESULTS / "vbr_pbe_soc"), soc=True, **HYBRID)
    run_step("host_pbe", c["host"], results, None)
    run_step("vbr_pbe", vbr, results, None)
    print(table(results))


if __name__ == "__main__":
    main()
