"""The Cl hop's saddle in Cs2NaBiCl6 from real pw.x without a band: symmetry-constrained relax.

A cross-check of the accelerated NEB of ``bench_neb_dft.py`` on the same hop, with the same
pw.x settings (its ``identity.json``) and the same relaxed end points (its
``checkpoint.json``): the highest image of the NEB's latest band round, symmetrised with its
own spglib group (Amm2 on this hop), relaxed with BFGS inside that group
(:func:`perovflow.workflows.neb_saddle.symmetric_saddle`), then one call along the hop for the
curvature. The barrier is the saddle's energy above the relaxed initial end point.

Resumable: the guess is stored in ``saddle_guess.json`` the first time, every pw.x call in
``saddle_calls.jsonl``; BFGS is deterministic and no ML potential enters, so a restart
replays the calls exactly. The result goes to ``saddle.json``.

``--cutoffs 25,40,60``: afterwards, single points at the relaxed initial end point and the
saddle (both as found at 25 Ry) for each ecutwfc (ecutrho 4x): the barrier's cutoff error at
fixed geometry, stored point by point in ``saddle_cutoffs.json``.

Usage: python benchmarks/bench_saddle_dft.py [--paths a] [--fmax 0.05] [--out DIR] [--status]
       [--cutoffs 25,40,60]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_neb_dft as neb

log = logging.getLogger("perovflow.neb")


def guess_for(folder: Path, template: Any) -> tuple[Any, dict[str, Any]]:
    """The NEB band's highest image (stored on first use): Atoms and where it came from."""
    from perovflow.workflows.neb_checkpoint import NEBCheckpoint

    path = folder / "saddle_guess.json"
    if not path.is_file():
        chk = NEBCheckpoint.load(folder / "checkpoint.json")
        if chk is None or chk.refine is None:
            raise SystemExit(f"error: no band round in {folder / 'checkpoint.json'} "
                             "(fix: run bench_neb_dft.py on this path first)")  # fmt: skip
        known = chk.refine.known
        image = max(known, key=lambda i: known[i][1])
        neb._write_json(path, {"round": chk.refine.outer, "image": image,
                               "energy_eV": known[image][1],
                               "positions": np.asarray(known[image][0]).tolist()})  # fmt: skip
    data = json.loads(path.read_text())
    atoms = template.copy()
    atoms.set_positions(np.array(data["positions"]))
    return atoms, {k: data[k] for k in ("round", "image", "energy_eV")}


def dft_saddle(hop: dict[str, Any], folder: Path, args: Any) -> dict[str, Any]:
    """The symmetry-constrained saddle with pw.x; its summary with cost and timings."""
    from perovflow.structures.endpoint_symmetry import endpoint_map
    from perovflow.workflows.neb_checkpoint import NEBCheckpoint
    from perovflow.workflows.neb_saddle import symmetric_saddle

    done = folder / "saddle.json"
    if done.is_file():
        return json.loads(done.read_text())
    neb.check_identity(folder, neb.identity(hop["initial"], args))
    chk = NEBCheckpoint.load(folder / "checkpoint.json")
    initial, final = chk.end_atoms(hop["initial"])
    guess, origin = guess_for(folder, hop["initial"])
    progress = neb.Progress(folder / "saddle_progress.json")
    log.addHandler(progress)
    expensive = neb.expensive_factory(folder, args, progress, hop["initial"], sub="saddle",
                                      calls="saddle_calls.jsonl")  # fmt: skip
    start = time.perf_counter()
    try:
        result = symmetric_saddle(initial, final, expensive(0), guess=guess, fmax=args.fmax,
                                  op=endpoint_map(hop["initial"], hop["final"], swap=True))  # fmt: skip
    finally:
        log.removeHandler(progress)
    calls = progress.data["calls"]
    record = {**result.summary(), "guess": origin, "initial_energy_eV": initial.get_potential_energy(),
              "pwx_runs": len(calls), "pwx_wall_s": round(sum(c["wall_s"] for c in calls), 1),
              "pwx_cpu_s": round(sum(c["cpu_s"] for c in calls), 1),
              "session_wall_s": round(time.perf_counter() - start, 1),
              "positions": result.atoms.get_positions().tolist()}  # fmt: skip
    neb._write_json(done, record)
    return record


def cutoff_series(hop: dict[str, Any], folder: Path, args: Any, cutoffs: list[float]) -> list:
    """The barrier at fixed geometries (relaxed initial end point, saddle) for each ecutwfc
    (ecutrho 4x): single points, stored one by one in ``saddle_cutoffs.json``."""
    import copy

    from perovflow.workflows.calculators import calculator_factory
    from perovflow.workflows.neb_checkpoint import NEBCheckpoint

    path = folder / "saddle_cutoffs.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    saddle = json.loads((folder / "saddle.json").read_text())
    initial, _ = NEBCheckpoint.load(folder / "checkpoint.json").end_atoms(hop["initial"])
    geometries = {"initial": initial.get_positions(), "saddle": np.array(saddle["positions"])}
    for ecut in cutoffs:
        for name, positions in geometries.items():
            if any(r["ecutwfc_Ry"] == ecut and r["geometry"] == name for r in rows):
                continue
            local = copy.copy(args)
            local.ecut_ry = ecut
            calc = calculator_factory("qe", folder / "cutoff" / f"{ecut:g}", "fast",
                                      neb.qe_overrides(local, hop["initial"]))(0 if name == "initial" else 1)  # fmt: skip
            atoms = hop["initial"].copy()
            atoms.set_positions(positions)
            start = time.perf_counter()
            energy = float(calc.get_potential_energy(atoms))
            rows.append({"ecutwfc_Ry": ecut, "geometry": name, "energy_eV": energy,
                         "wall_s": round(time.perf_counter() - start, 1)})  # fmt: skip
            neb._write_json(path, rows)
    barrier = {}
    for r in rows:
        barrier.setdefault(r["ecutwfc_Ry"], {})[r["geometry"]] = r["energy_eV"]
    return [{"ecutwfc_Ry": e, "barrier_eV": v["saddle"] - v["initial"]}
            for e, v in sorted(barrier.items()) if len(v) == 2]  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run (or report) the saddle of each chosen path; print one line each."""
    import os

    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--cutoffs", default=None)  # e.g. 25,40,60 (see the module docstring)
    known, rest = extra.parse_known_args(argv)
    cutoffs = [float(c) for c in known.cutoffs.split(",")] if known.cutoffs else None
    args = neb.parse(rest)
    os.environ.setdefault("PEROVFLOW_PARALLEL__RANKS", str(args.ranks))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = []
    for hop in neb.hops_for(args.paths, args.smoke):
        folder = Path(args.out) / hop["key"]
        if args.status:
            path = folder / "saddle_progress.json"
            data = json.loads(path.read_text()) if path.is_file() else {"calls": []}
            print(f"{hop['label']}: {len(data['calls'])} pw.x runs; last: "
                  f"{data['calls'][-1]['energy_eV'] if data['calls'] else '-'}")  # fmt: skip
            continue
        record = dft_saddle(hop, folder, args)
        if cutoffs:
            record = {**record, "cutoffs": cutoff_series(hop, folder, args, cutoffs)}
            for row in record["cutoffs"]:
                print(f"{hop['label']}: ecutwfc {row['ecutwfc_Ry']:g} Ry, barrier at the "
                      f"25-Ry geometries {row['barrier_eV']:.4f} eV")  # fmt: skip
        ml = json.loads((folder / "ml_only.json").read_text())
        print(f"{hop['label']}: saddle ({record['spacegroup']}) {record['barrier_eV']:.3f} eV, "
              f"max force {record['max_force_eV_A']:.3f} eV/Å, converged {record['converged']}, "
              f"curvature along the hop {record['curvature_eV_A2']:.2f} eV/Å², "
              f"{record['pwx_runs']} pw.x runs, {record['pwx_wall_s']:.0f} s; seed "
              f"{hop['seed_eV']}, CHGNet only {ml['barrier_forward_eV']:.3f}")  # fmt: skip
        out.append(record)
    return out


if __name__ == "__main__":
    main()
