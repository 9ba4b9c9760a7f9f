"""The seed's migration barriers from real DFT: accelerated NEB, pw.x expensive, CHGNet cheap.

Paths (``--paths``):

* ``a`` - the Cl hop in Cs2NaBiCl6 (40-atom conventional cell, 39 with the vacancy; the
  shortest Cl -> V_Cl hop), seed 004: 0.477 eV;
* ``b`` - the four seed-004 paths in the 80-atom Cs2Na0.875Ag0.125BiCl6 cell (2x1x1, one Ag;
  the ``studies/cs2naagbicl6_migration.yaml`` structures): Na 1.288, Ag 1.071, Cl from Na-Cl
  0.624, Cl from Ag-Cl 0.481 eV.

Per path: the accelerated NEB of :func:`perovflow.workflows.neb.accelerated_neb` (end points
relaxed on the DFT surface - only the initial one where the final one is its symmetry image,
as on the Cl hop (``symmetric_ends``) - IDPP band converged with CHGNet, then the whole band converged
with pw.x through the Δ-model surrogate, every image's NEB force below ``--fmax`` with the
climbing image on), and beside it the ML-only value: the plain CI-NEB with CHGNet alone on
the same unrelaxed end points. pw.x settings: the ``fast`` protocol's cutoffs (25/100 Ry,
GTH-PBE), Γ only, D3 (``vdw_corr='dft-d3'``, the QE keyword of ``dispersion: d3``), SCF
converged to ``--conv-eV``; the neutral vacancy (odd electron count: spin-polarised, one
unpaired electron, as the migration study runs it).

Resumable: ``<out>/<path>/checkpoint.json`` (the library's :class:`NEBCheckpoint`: frozen
end points, band, Δ-model data, trust radius, call counts) is rewritten after the end points
and after every band round, and a restarted run continues from it on any machine. Every
pw.x call (positions, energy, forces, wall and CPU time) is also appended to
``<out>/<path>/calls.jsonl`` as it finishes (:class:`CachedCalculator`) and replayed when the
same geometry (to 1e-4 Å) comes again: a call killed mid-round is not lost. (Replay alone is
not enough across machines: CHGNet's float32 noise differs by CPU and a cheap relaxation
amplifies it to ~2e-3 Å.) A finished path is stored in ``result.json``. Each image
has its own pw.x folder; the first call of an image starts from the charge density of the
nearest geometry already computed (copied into its folder), later calls from its own.
``<out>/<path>/progress.json`` holds the calls so far and the NEB rounds (max force).

``--smoke``: the same pipeline on the Br hop of the 5-atom CsPbBr3 cell (4 with the vacancy),
3 images, 15 Ry, a few minutes. ``--dry-run`` prints the set-up and runs nothing.

Usage: python benchmarks/bench_neb_dft.py [--paths a|b|ab] [--smoke] [--dry-run] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")

SEED_EV = {  # seed 004, PBE-D3, USPP 500/5000 eV, CI-NEB 9 images
    "Cl in Cs2NaBiCl6": 0.477,
    "Na": 1.288,
    "Ag": 1.071,
    "Cl from Na–Cl": 0.624,
    "Cl from Ag–Cl": 0.481,
}
RY_EV = 13.605693122994
log = logging.getLogger("perovflow.neb")


def hops_for(paths: str, smoke: bool) -> list[dict[str, Any]]:
    """The hops to run: key, label, seed value and unrelaxed end points (ASE Atoms)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from perovflow.structures.paths import hop_endpoints, seed_hops
    from perovflow.structures.prototypes import build_prototype
    from perovflow.structures.supercells import make_supercell
    from perovflow.structures.variants import substitute

    chosen = []
    if smoke:
        host = build_prototype("CsPbBr3-cubic", cell="primitive")
        chosen.append(("smoke", "Br in CsPbBr3 (5-atom cell)", None, host, _shortest(host, "Br")))
    if "a" in paths and not smoke:
        host = build_prototype("Cs2NaBiCl6", cell="conventional")
        label = "Cl in Cs2NaBiCl6"
        chosen.append(("a-cl", label, SEED_EV[label], host, _shortest(host, "Cl")))
    if "b" in paths and not smoke:
        cell = make_supercell(build_prototype("Cs2NaBiCl6", cell="conventional"), "2x1x1")
        host = substitute(cell, "Na", "Ag", 1).structure
        names = ("Na", "Ag", "Cl from Na–Cl", "Cl from Ag–Cl")  # seed_hops' order
        for n, (name, hop) in enumerate(zip(names, seed_hops(host, anion="Cl"), strict=True), 1):
            chosen.append((f"b{n}-{hop.moving_element.lower()}", f"{name} (80-atom cell)",
                           SEED_EV[name], host, hop))  # fmt: skip
    out = []
    for key, label, seed, host, hop in chosen:
        initial, final = hop_endpoints(host, hop)
        out.append({"key": key, "label": label, "seed_eV": seed, "hop_A": round(hop.length, 3),
                    "initial": AseAtomsAdaptor.get_atoms(initial),
                    "final": AseAtomsAdaptor.get_atoms(final)})  # fmt: skip
    return out


def _shortest(host: Any, element: str) -> Any:
    from perovflow.structures.paths import enumerate_hops

    return min(enumerate_hops(host, element), key=lambda h: h.length)


def qe_overrides(args: argparse.Namespace, atoms: Any) -> dict[str, Any]:
    """pw.x keys laid over the ``fast`` protocol (the user's settings win over the preset):
    Γ with pw.x's real-wavefunction algorithms (``K_POINTS gamma``: on the 39-atom Cl hop
    114 s against 197 s for ``automatic 1 1 1`` from scratch, energies equal to 1e-6 eV), D3,
    the SCF threshold, no stress (fixed cell), ``--extra-bands`` empty bands per spin (an
    insulator with one defect level: the protocol's 20 % + 4 is ~30 bands more)."""
    from perovflow.engines.pseudos import get_pseudos
    from perovflow.engines.qe.inputs import qe_input_set

    pseudos = get_pseudos(sorted(set(atoms.get_chemical_symbols())), "qe")
    nelect = qe_input_set(atoms, "static", "fast", pseudos, defect=True)["_nelect"]
    out: dict[str, Any] = {
        "kpts": None,
        "vdw_corr": "dft-d3",
        "conv_thr": args.conv_eV / RY_EV,
        "tstress": False,
    }
    if args.extra_bands is not None:
        out["nbnd"] = math.ceil(nelect / 2) + args.extra_bands
    if args.ecut_ry:
        out.update(ecutwfc=args.ecut_ry, ecutrho=4 * args.ecut_ry)
    return out


class DensitySeeded(Calculator):
    """pw.x (a :class:`QECalculator` in its image folder) that records every call and starts
    an empty folder from the charge density of the nearest geometry already computed.

    ``registry`` (shared by all images) maps folder -> positions of its last finished run;
    ``progress`` receives one row per finished pw.x run.
    """

    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(self, inner: Calculator, index: int, registry: dict, progress: Any) -> None:
        super().__init__()
        self.inner, self.index, self.registry, self.progress = inner, index, registry, progress

    def _seed_restart(self, positions: np.ndarray) -> str | None:
        """An empty folder gets the nearest computed geometry's ``pwscf.save`` (density and
        wavefunctions: same cell and cutoff, so the same plane waves); every run with
        wavefunctions on disk starts from them (``startingwfc='file'``; the density is
        :class:`QECalculator`'s ``startingpot='file'``)."""
        target = Path(self.inner.directory) / "pwscf.save"
        seeded = None
        if not (target / "charge-density.dat").exists() and self.registry:
            folder = min(self.registry, key=lambda f: np.abs(self.registry[f] - positions).max())
            if (Path(folder) / "pwscf.save" / "charge-density.dat").exists():
                shutil.copytree(Path(folder) / "pwscf.save", target, dirs_exist_ok=True)
                seeded = folder
        if (target / "charge-density.dat").exists() and any(target.glob("wfc*.dat")):
            self.inner.overrides["startingwfc"] = "file"
        else:
            self.inner.overrides.pop("startingwfc", None)
        return seeded

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """One pw.x scf; timed (wall and CPU of the pw.x processes) and recorded."""
        super().calculate(atoms, properties, system_changes)
        positions = self.atoms.get_positions()
        seeded = self._seed_restart(positions)
        wall, cpu = time.perf_counter(), _child_cpu()
        work = self.atoms.copy()
        energy = float(self.inner.get_potential_energy(work))
        forces = np.array(self.inner.get_forces(work))
        self.registry[str(self.inner.directory)] = positions
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
        self.progress.call({"image": self.index, "energy_eV": energy,
                            "max_force_eV_A": float(np.linalg.norm(forces, axis=1).max()),
                            "wall_s": round(time.perf_counter() - wall, 1),
                            "cpu_s": round(_child_cpu() - cpu, 1), "density_from": seeded,
                            "folder": str(self.inner.directory), "positions": positions.tolist()})  # fmt: skip


class ReplayOnly(Calculator):
    """``--replay-only``: no pw.x; the first geometry not in ``calls.jsonl`` stops the run."""

    implemented_properties = ("energy", "free_energy", "forces")

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Stop: this geometry was never computed."""
        raise SystemExit("replay-only: the next geometry is not stored (a pw.x run would start)")


def _child_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


class Progress(logging.Handler):
    """``progress.json`` of one path: pw.x calls so far and the NEB rounds, written atomically."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.INFO)
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {"calls": [], "log": []}

    def call(self, row: dict[str, Any]) -> None:
        """A finished pw.x run."""
        self.data["calls"].append({"done": time.strftime("%H:%M:%S"), **row})
        self.write()

    def emit(self, record: logging.LogRecord) -> None:
        """A log line of the NEB (end points, cheap band, refinement rounds)."""
        self.data["log"].append(f"{time.strftime('%H:%M:%S')} {record.getMessage()}")
        self.write()

    def write(self) -> None:
        """Atomic rewrite."""
        _write_json(self.path, self.data)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float))
    tmp.replace(path)


def expensive_factory(
    folder: Path, args: argparse.Namespace, progress: Progress, atoms: Any,
    sub: str = "pw", calls: str = "calls.jsonl",
):  # fmt: skip
    """``index -> calculator``: cached (replayed on restart), density-seeded pw.x per image
    (in ``folder/sub/image_XX``, calls stored in ``folder/calls``)."""
    from perovflow.workflows.calculators import calculator_factory
    from perovflow.workflows.neb_calcs import CachedCalculator

    pwx = calculator_factory("qe", folder / sub, "fast", qe_overrides(args, atoms))
    registry: dict[str, np.ndarray] = {}
    for row in progress.data["calls"]:  # last geometry of every folder, for density seeding
        registry[row["folder"]] = np.array(row["positions"])
    calcs: dict[int, Calculator] = {}

    def expensive(index: int) -> Calculator:
        if index not in calcs:
            inner = ReplayOnly() if args.replay_only else DensitySeeded(pwx(index), index, registry,
                                                                       progress)  # fmt: skip
            calcs[index] = CachedCalculator(inner, folder / calls)
        return calcs[index]

    expensive.calcs = calcs  # type: ignore[attr-defined]
    return expensive


def ml_only(hop: dict[str, Any], folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """CHGNet alone: plain CI-NEB from the IDPP band, end points relaxed with CHGNet."""
    from perovflow.workflows.calculators import mlip_calculator
    from perovflow.workflows.neb import plain_neb

    done = folder / "ml_only.json"
    if done.is_file():
        return json.loads(done.read_text())
    chgnet = mlip_calculator("chgnet")
    result = plain_neb(hop["initial"], hop["final"], lambda _i: chgnet, nimages=args.images,
                       fmax=args.fmax, steps=1000, interpolation="idpp")  # fmt: skip
    record = result.summary()
    _write_json(done, record)
    return record


def identity(atoms: Any, args: argparse.Namespace) -> dict[str, Any]:
    """What the stored pw.x calls of a path depend on: potentials, protocol, pw.x keys."""
    from perovflow.engines.fingerprint import pseudo_checksums

    return {"pseudopotentials": pseudo_checksums("qe", set(atoms.get_chemical_symbols())),
            "protocol": "fast", "pw.x": qe_overrides(args, atoms)}  # fmt: skip


def check_identity(folder: Path, ident: dict[str, Any]) -> None:
    """Refuse to replay calls made with other potentials or settings (``identity.json``)."""
    path = folder / "identity.json"
    calls = folder / "calls.jsonl"
    old = json.loads(path.read_text()) if path.is_file() else None
    if old is None and calls.is_file():
        old = {"pseudopotentials": "not recorded"}
    if old is not None and old != ident:
        changed = sorted(k for k in ident if old.get(k) != ident[k])
        raise SystemExit(
            f"error: {calls} holds pw.x calls made with other {', '.join(changed)} "
            f"(fix: move {folder} away, or pass another --out, to start this path afresh)"
        )
    _write_json(path, ident)


def dft_neb(hop: dict[str, Any], folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The accelerated NEB with pw.x, resumable; its summary with cost and timings."""
    from perovflow.workflows.calculators import mlip_calculator
    from perovflow.workflows.neb import accelerated_neb

    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    check_identity(folder, identity(hop["initial"], args))
    progress = Progress(folder / "progress.json")
    log.addHandler(progress)
    expensive = expensive_factory(folder, args, progress, hop["initial"])
    start = time.perf_counter()
    try:
        result = accelerated_neb(hop["initial"], hop["final"], expensive, mlip_calculator("chgnet"),
                                 nimages=args.images, fmax=args.fmax,
                                 outer_steps=args.outer_steps, symmetric_ends=True,
                                 revert=True, checkpoint=folder / "checkpoint.json")  # fmt: skip
    finally:
        log.removeHandler(progress)
        cached = expensive.calcs.values()
        log.info("replayed %d stored pw.x calls (%d of them within %.0e Å, worst %.2g Å)",
                 sum(c.replayed for c in cached), sum(c.near for c in cached),
                 next(iter(cached)).tol if cached else 0.0,
                 max((c.worst for c in cached), default=0.0))  # fmt: skip
    calls = progress.data["calls"]
    record = {**result.summary(), "history": result.history,
              "endpoint_max_force_eV_A": result.meta.get("endpoint_max_force_eV_A"),
              "final_end_mapped": result.meta.get("final_end_mapped"),
              "replayed_calls": sum(c.replayed for c in expensive.calcs.values()),
              "replayed_near": sum(c.near for c in expensive.calcs.values()),
              "replay_worst_A": max((c.worst for c in expensive.calcs.values()), default=0.0),
              "pwx_runs": len(calls), "pwx_wall_s": round(sum(c["wall_s"] for c in calls), 1),
              "pwx_cpu_s": round(sum(c["cpu_s"] for c in calls), 1),
              "session_wall_s": round(time.perf_counter() - start, 1),
              "image_energies_eV": [float(im.get_potential_energy()) for im in result.images]}  # fmt: skip
    _write_json(done, record)
    return record


def setup(hops: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """What would run (``--dry-run``): cells, pw.x parameters of the first image, NEB settings."""
    from perovflow.engines.pseudos import get_pseudos
    from perovflow.engines.qe.inputs import qe_input_set

    atoms = hops[0]["initial"]
    pseudos = get_pseudos(sorted(set(atoms.get_chemical_symbols())), "qe")
    params = qe_input_set(
        atoms, "static", "fast", pseudos, defect=True, overrides=qe_overrides(args, atoms)
    )
    return {"paths": [{k: h[k] for k in ("key", "label", "seed_eV", "hop_A")} | {"atoms": len(h["initial"])}
                      for h in hops],
            "pw.x": {"system": params["input_data"]["system"], "kpts": params["kpts"],
                     "conv_thr_Ry": params["input_data"]["electrons"]["conv_thr"],
                     "nelect": params["_nelect"], "pseudopotentials": params["pseudopotentials"]},
            "neb": {"method": "accelerated (whole band)", "images": args.images, "fmax": args.fmax,
                    "cheap": "chgnet", "endpoints": "relaxed on the DFT surface (surrogate)",
                    "outer_steps": args.outer_steps},
            "ranks": os.environ.get("PEROVFLOW_PARALLEL__RANKS"), "out": args.out}  # fmt: skip


def row(hop: dict[str, Any], dft: dict[str, Any], ml: dict[str, Any]) -> str:
    """One line of the table: barrier eV and kcal/mol, calls, converged, times, seed, ML-only."""
    seed = "-" if hop["seed_eV"] is None else f"{hop['seed_eV']:.3f}"
    return " | ".join([hop["label"], f"{dft['barrier_forward_eV']:.3f}",
                       f"{dft['barrier_forward_kcal_mol']:.1f}",
                       f"{dft['expensive_calls']} ({dft['endpoint_calls']})",
                       str(dft["converged"]), f"{dft['max_force_eV_A']:.3f}",
                       f"{dft['pwx_wall_s']:.0f}", f"{dft['pwx_cpu_s']:.0f}", seed,
                       f"{ml['barrier_forward_eV']:.3f}"])  # fmt: skip


def status(folder: Path, label: str) -> str:
    """Progress of a path (``--status``): pw.x runs, their time, the last NEB round."""
    if (folder / "result.json").is_file():
        return f"{label}: finished ({folder / 'result.json'})"
    if not (folder / "progress.json").is_file():
        return f"{label}: {'no pw.x run finished' if folder.is_dir() else 'not started'}"
    data = json.loads((folder / "progress.json").read_text())
    calls, rounds = data["calls"], [line for line in data["log"] if "refine" in line]
    last = rounds[-1] if rounds else (data["log"][-1] if data["log"] else "end points")
    return (f"{label}: {len(calls)} pw.x runs, {sum(c['wall_s'] for c in calls):.0f} s wall, "
            f"{sum(c['cpu_s'] for c in calls):.0f} s CPU; last: {last}")  # fmt: skip


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default="a", help="a, b or ab (default a).")
    parser.add_argument("--smoke", action="store_true", help="5-atom CsPbBr3, 3 images, 15 Ry.")
    parser.add_argument("--dry-run", action="store_true", help="Print the set-up only.")
    parser.add_argument("--status", action="store_true", help="Print the progress only.")
    parser.add_argument(
        "--replay-only",
        action="store_true",
        help="Replay the stored calls, stop at the first new one (no pw.x).",
    )
    parser.add_argument(
        "--images", type=int, default=None, help="Intermediate images (9; smoke 3)."
    )
    parser.add_argument("--fmax", type=float, default=None, help="eV/Å (0.05; smoke 0.1).")
    parser.add_argument("--outer-steps", type=int, default=40, help="Cap on DFT refinement rounds.")
    parser.add_argument("--ecut-ry", type=float, default=None, help="ecutwfc (fast: 25; smoke 15).")
    parser.add_argument("--conv-eV", type=float, default=1e-6, help="SCF convergence, eV.")
    parser.add_argument(
        "--extra-bands", type=int, default=None, help="Empty bands per spin (8; smoke: protocol's)."
    )
    parser.add_argument("--ranks", type=int, default=2, help="MPI ranks of pw.x.")
    parser.add_argument("--out", default="benchmarks/results/neb_dft", help="Results folder.")
    args = parser.parse_args(argv)
    args.images = args.images or (3 if args.smoke else 9)
    args.fmax = args.fmax or (0.1 if args.smoke else 0.05)
    args.ecut_ry = args.ecut_ry or (15.0 if args.smoke else None)
    if args.extra_bands is None and not args.smoke:
        args.extra_bands = 8
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run (or describe) the chosen paths; print the table; return the rows."""
    args = parse(argv)
    os.environ.setdefault("PEROVFLOW_PARALLEL__RANKS", str(args.ranks))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    hops = hops_for(args.paths, args.smoke)
    if args.dry_run:
        print(json.dumps(setup(hops, args), indent=1, default=str))
        return []
    if args.status:
        for hop in hops:
            print(status(Path(args.out) / hop["key"], hop["label"]))
        return []
    results = []
    for hop in hops:
        folder = Path(args.out) / hop["key"]
        folder.mkdir(parents=True, exist_ok=True)
        print(f"# {hop['label']}: hop {hop['hop_A']} Å, {len(hop['initial'])} atoms -> {folder}",
              flush=True)  # fmt: skip
        ml = ml_only(hop, folder, args)
        print(f"#   ML only (CHGNet): {ml['barrier_forward_eV']:.3f} eV", flush=True)
        results.append({"hop": hop, "dft": dft_neb(hop, folder, args), "ml": ml})
    print("\npath | barrier eV | kcal/mol | pw.x calls (end points) | converged | max NEB force "
          "eV/Å | pw.x wall s | pw.x CPU s | seed eV | CHGNet only eV")  # fmt: skip
    for r in results:
        print(row(r["hop"], r["dft"], r["ml"]))
    return results


if __name__ == "__main__":
    main()
