"""NEB benchmark: expensive force calls of the plain CI-NEB vs the accelerated NEB, same saddle.

Per hop, in one run, side by side (every expensive energy+force call counted, end points
included; every procedure stops at the same test: all images' NEB forces below ``fmax``
with the climbing image on, on the expensive surface):

* plain (IDPP) - the seed's CI-NEB from scratch, from the IDPP band (the baseline);
* accelerated - the same IDPP band, converged with a cheap ML potential, then converged on
  the expensive surface through the Δ-model surrogate (whole band, the default mode);
* plain (linear) - the seed's own linear band, a separate comparison (it can end on
  another saddle).

The ratio is plain (IDPP) calls / accelerated calls; the target is >= 10x at |Δbarrier| <=
0.02 eV. Where the two barriers differ by more, the highest image of each band is classified
(finite-difference Hessian with the expensive calculator: number of negative eigenvalues)
and the hop is reported as a failure of the target.

Hops (``--only``): ``cl`` Cl in Cs2NaBiCl6 (40-atom conventional cell), ``na`` Na in
Cs2NaBiCl6, ``br`` Br in Cs4PbBr6 (22-atom primitive cell), ``cspbbr3`` Br in the 2x2x2
pseudo-cubic supercell of orthorhombic CsPbBr3 (40 atoms). 9 images everywhere. Expensive
stand-in: SevenNet-0; cheap: CHGNet 0.3 (both packaged; ``--swap`` exchanges them).
``--qe``: real pw.x (fast protocol, Γ) on the Br hop of a 2x2x2 CsBr supercell (CsCl type, a
stable host: 16 atoms, 15 with the vacancy; V_Br⁺, closed shell), 5 images, Γ-only (pw.x's
Γ trick). ``--dft-seed``: the Cs2NaBiCl6 Cl hop with pw.x at the
seed protocol (9 images, days on a cluster; ``--dry-run`` prints the set-up only).

Resumable: every finished procedure is stored in ``--out`` (JSON; default
``benchmarks/results/neb``), and every expensive (and cheap) call in a per-procedure log there
that a restarted run replays, so an interrupted run continues where it stopped (replayed
calls still count; their wall time does not). A run whose procedures are all stored prints
the whole table at once.

Usage: python benchmarks/bench_neb.py [--only cl|na|br|cspbbr3] [--qe] [--dft-seed] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")

#: the 2x2x2 pseudo-cubic supercell of the Pnma cell (a_o + c_o, a_o - c_o, b_o; 40 atoms).
#: The tilted orthorhombic phase, not the cubic one: cubic CsPbBr3 is unstable to octahedral
#: tilts at 0 K, so its end points relax into whichever tilted minimum an optimiser finds.
PSEUDO_CUBIC_2X2X2 = "1 0 1  1 0 -1  0 1 0"
SUPERCELL_NAMES = {PSEUDO_CUBIC_2X2X2: "2x2x2 pseudo-cubic"}
HOPS = {  # key: (prototype, cell, supercell, vacancy element)
    "cl": ("Cs2NaBiCl6", "conventional", None, "Cl"),
    "na": ("Cs2NaBiCl6", "conventional", None, "Na"),
    "br": ("Cs4PbBr6", "primitive", None, "Br"),
    "cspbbr3": ("CsPbBr3-ortho", "conventional", PSEUDO_CUBIC_2X2X2, "Br"),
}
# Intermediate images per hop (both procedures).
IMAGES = {"cl": 9, "na": 9, "br": 9, "cspbbr3": 9}
# End-point threshold (eV/Å, both procedures) where it is not ``fmax``: on the tilted CsPbBr3
# cell's flat surface BFGS at 0.05 eV/Å stops 0.044 eV above the minimum that both reach at
# 0.01 eV/Å (-125.5615 eV BFGS, -125.5619 eV surrogate), and the barrier counts from there.
ENDPOINT_FMAX = {"cspbbr3": 0.01}
#: pw.x hop: a host without soft modes (cubic CsPbBr3's tilt instability puts minima below
#: its end points and a plain band on a third-order point), small enough for pw.x at Γ; the
#: charged vacancy V_Br⁺ (the anion vacancy that migrates in alkali halides) is closed-shell
QE_HOP, QE_KEY, QE_IMAGES = ("CsBr", "conventional", "2 2 2", "Br"), "csbr-pwx-fast", 5
QE_CHARGE = 1.0
TOLERANCE_EV, TARGET = 0.02, 10.0


def hop_atoms(prototype: str, cell: str, supercell: str | None, element: str) -> tuple:
    """Unrelaxed end points of the shortest symmetry-distinct hop (ASE Atoms) and its label."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from perovflow.structures.paths import enumerate_hops, hop_endpoints
    from perovflow.structures.prototypes import build_prototype
    from perovflow.structures.supercells import make_supercell

    host = build_prototype(prototype, cell=cell)
    host = make_supercell(host, supercell) if supercell else host
    hop = min(enumerate_hops(host, element), key=lambda h: h.length)
    initial, final = hop_endpoints(host, hop)
    size = f"{SUPERCELL_NAMES.get(supercell, supercell)}, " if supercell else ""
    label = f"{hop.moving_element} in {prototype} ({size}{len(host)} atoms), {hop.length:.2f} Å"
    return AseAtomsAdaptor.get_atoms(initial), AseAtomsAdaptor.get_atoms(final), label


def saddle_order(images: list, calc: Any) -> tuple[list, list]:
    """Negative Hessian eigenvalues at the highest image (finite differences, ASE Vibrations).

    Returns ``[count below -0.01 eV/Å², lowest, second lowest]`` and the unstable mode most
    nearly perpendicular to the band (the path's own unstable direction excluded; [] when the
    image has only one).
    """
    import tempfile

    import numpy as np
    from ase.vibrations import Vibrations

    energies = [im.get_potential_energy() for im in images]
    top = int(np.argmax(energies))
    ts = images[top].copy()
    ts.calc = calc
    with tempfile.TemporaryDirectory() as tmp:
        vib = Vibrations(ts, name=f"{tmp}/vib", delta=0.01)
        vib.run()
        hessian = vib.get_vibrations().get_hessian_2d()
    eig, vec = np.linalg.eigh(0.5 * (hessian + hessian.T))
    n_neg = int(np.sum(eig < -0.01))
    tangent = (images[top + 1].positions - images[top - 1].positions).ravel()
    overlap = np.abs(vec[:, :n_neg].T @ tangent) / np.linalg.norm(tangent)
    mode = vec[:, int(np.argmin(overlap))].tolist() if n_neg > 1 else []
    return [n_neg, float(eig[0]), float(eig[1])], mode


def escape(plain: dict, mode: list, expensive_for, args, folder: Path) -> dict:
    """The standard remedy for a CI-NEB that converged to a higher-order stationary point:
    the climbing image is pushed 0.1 Å (largest atom) along its unstable mode perpendicular
    to the path and the CI-NEB continues from that band (FIRE, same ``fmax``); its calls are
    added to the plain run's."""
    import numpy as np

    from perovflow.analysis.neb import analyze_neb, load_images
    from perovflow.workflows.neb import optimize_band
    from perovflow.workflows.neb_calcs import (
        CachedCalculator,
        CallCounter,
        CountingCalculator,
        freeze,
    )
    from perovflow.workflows.neb_gp import neb_residuals

    done = folder / "plain-idpp-escape.json"
    if done.is_file():
        return json.loads(done.read_text())
    band = load_images({"images": plain["images"]})
    top = int(np.argmax([im.get_potential_energy() for im in band]))
    push = np.array(mode).reshape(-1, 3)
    band[top].positions += 0.1 * push / np.linalg.norm(push, axis=1).max()
    counter, log_file = CallCounter(), folder / "plain-idpp-escape.calls.jsonl"
    for i in range(1, len(band) - 1):
        inner = CachedCalculator(expensive_for("plain-idpp-escape")(i), log_file)
        band[i].calc = CountingCalculator(inner, counter)
    converged, steps = optimize_band(band, args.fmax, args.steps, climb=True)
    images = [freeze(im, im.get_potential_energy(), im.get_forces()) for im in band]
    known = {i: (im.positions, im.get_potential_energy(), im.get_forces())
             for i, im in enumerate(images) if 0 < i < len(images) - 1}  # fmt: skip
    result = analyze_neb(images, refined=list(known))
    record = {**result.summary(), "procedure": "plain (idpp), escaped", "converged": converged,
              "max_force_eV_A": float(neb_residuals(images, known).max()),
              "expensive_calls": plain["expensive_calls"] + counter.calls,
              "escape_calls": counter.calls, "endpoint_calls": plain["endpoint_calls"],
              "steps": plain["steps"] + steps, "images": _images_doc(result)}  # fmt: skip
    _write_json(done, record)
    return record


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def _images_doc(result) -> list[dict]:
    return [{"numbers": im.numbers.tolist(), "positions": im.positions.tolist(),
             "cell": im.cell[:].tolist(), "pbc": im.pbc.tolist(),
             "energy": float(im.get_potential_energy()), "forces": im.get_forces().tolist()}
            for im in result.images]  # fmt: skip


def run_procedure(name: str, hop: tuple, expensive_for, cheap, args, folder: Path) -> dict:
    """One procedure on one hop, or its stored record when an earlier run finished it."""
    from perovflow.workflows.neb import accelerated_neb, plain_neb
    from perovflow.workflows.neb_calcs import CachedCalculator

    done = folder / f"{name}.json"
    if done.is_file():
        return json.loads(done.read_text())
    initial, final = hop[0], hop[1]
    calcs: dict[int, CachedCalculator] = {}

    def expensive(index: int) -> CachedCalculator:
        if index not in calcs:
            inner = expensive_for(name)(index)
            calcs[index] = CachedCalculator(inner, folder / f"{name}.calls.jsonl")
        return calcs[index]

    common = {"nimages": args.images, "fmax": args.fmax,
              "endpoint_fmax": getattr(args, "endpoint_fmax", None)}  # fmt: skip
    if name == "accelerated":
        cached_cheap = CachedCalculator(cheap, folder / f"{name}.cheap.jsonl")
        result = accelerated_neb(initial, final, expensive, cached_cheap, **common)
    else:
        interpolation = "idpp" if name == "plain-idpp" else "linear"
        result = plain_neb(initial, final, expensive, steps=args.steps,
                           interpolation=interpolation, **common)  # fmt: skip
    record = {**result.summary(), "expensive_s": round(result.expensive_seconds, 1),
              "replayed_calls": sum(c.replayed for c in calcs.values()),
              "images": _images_doc(result)}  # fmt: skip
    _write_json(done, record)
    return record


def compare(key: str, hop: tuple, expensive_for, cheap, check, args) -> dict:
    """The accelerated and plain procedures on one hop, the ratio, and the saddle check where
    they differ (a plain band on a higher-order stationary point is continued past it,
    :func:`escape`); then the plain band from the seed's linear start, a separate comparison
    (last, so an interrupted run has the verdict first)."""
    folder = Path(args.out) / key
    folder.mkdir(parents=True, exist_ok=True)
    runs = {}
    row = {"hop": hop[2], "runs": runs, "images": args.images}
    for name in ("accelerated", "plain-idpp"):  # cheapest first
        print(f"#   {name} ...", flush=True)
        runs[name] = run_procedure(name, hop, expensive_for, cheap, args, folder)
    _verdict(row)
    if row["differs"] and check is not None:
        row["saddles"] = _saddles(folder, runs, ("plain-idpp", "accelerated"), check)
        if row["saddles"]["plain-idpp"][0] > 1:
            mode = json.loads((folder / "modes.json").read_text())["plain-idpp"]
            print("#   plain-idpp-escape ...", flush=True)
            runs["plain-idpp-escape"] = escape(runs["plain-idpp"], mode, expensive_for, args,
                                               folder)  # fmt: skip
            _verdict(row)
            if row["differs"]:
                names = ("plain-idpp-escape",)
                row["saddles"].update(_saddles(folder, runs, names, check, "escape"))
    print("#   plain-linear ...", flush=True)
    runs["plain-linear"] = run_procedure("plain-linear", hop, expensive_for, cheap, args, folder)
    return row


def _verdict(row: dict) -> None:
    """Ratio, Δ barrier and verdict against the baseline (the escaped plain run if any)."""
    runs = row["runs"]
    plain, fast = runs.get("plain-idpp-escape", runs["plain-idpp"]), runs["accelerated"]
    row["delta_eV"] = fast["barrier_forward_eV"] - plain["barrier_forward_eV"]
    row["ratio"] = plain["expensive_calls"] / max(fast["expensive_calls"], 1)
    row["differs"] = abs(row["delta_eV"]) > TOLERANCE_EV
    row["target_met"] = bool(not row["differs"] and row["ratio"] >= TARGET
                             and plain["converged"] and fast["converged"])  # fmt: skip


def _saddles(folder: Path, runs: dict, names: tuple, check, tag: str = "") -> dict:
    """Stored (or newly computed) saddle classification of the named runs' top images."""
    from perovflow.analysis.neb import load_images

    path = folder / f"saddles{'-' + tag if tag else ''}.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    if not old or any(len(v) < 3 for v in old.values()):
        found = {n: saddle_order(load_images({"images": runs[n]["images"]}), check) for n in names}
        _write_json(path, {n: v[0] for n, v in found.items()})
        _write_json(folder / f"modes{'-' + tag if tag else ''}.json",
                    {n: v[1] for n, v in found.items()})  # fmt: skip
    return json.loads(path.read_text())


def print_table(rows: list[dict], expensive: str) -> None:
    """Side-by-side Markdown table (calls / barrier eV) and the saddle notes."""

    def cell(run: dict) -> str:
        ok = "" if run["converged"] else ", NOT converged"
        return f"{run['expensive_calls']} / {run['barrier_forward_eV']:.3f} eV{ok}"

    print(f"\nexpensive calls (end points included) / barrier; expensive: {expensive}")
    head = ["hop", "images", "plain, IDPP band", "accelerated", "ratio", "Δ barrier",
            f"≥{TARGET:.0f}× at ≤{TOLERANCE_EV} eV", "plain, linear band"]  # fmt: skip
    print("| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
    for r in rows:
        runs = r["runs"]
        verdict = "met" if r["target_met"] else "**failed**"
        plain = cell(runs["plain-idpp"])
        if "plain-idpp-escape" in runs:
            plain += f" → escaped: {cell(runs['plain-idpp-escape'])}"
        print("| " + " | ".join([r["hop"], str(r.get("images", "")), plain,
                                 cell(runs["accelerated"]), f"{r['ratio']:.1f}×",
                                 f"{r['delta_eV']:+.3f} eV", verdict,
                                 cell(runs["plain-linear"]) if "plain-linear" in runs
                                 else "not run"]) + " |")  # fmt: skip
    for r in rows:
        plain, fast = r["runs"]["plain-idpp"], r["runs"]["accelerated"]
        ends = [fast["images"][i]["energy"] - plain["images"][i]["energy"] for i in (0, -1)]
        if max(abs(e) for e in ends) > TOLERANCE_EV:  # the procedures relaxed to other minima
            print(f"# {r['hop']}: accelerated end points lie {ends[0]:+.3f} / {ends[1]:+.3f} eV "
                  "from the plain ones (other minima): not the same hop")  # fmt: skip
        for name, (n_neg, lowest, second, *_) in r.get("saddles", {}).items():
            kind = "first-order saddle" if n_neg == 1 else "not a first-order saddle"
            print(f"# {r['hop']}, {name}: top image has {n_neg} negative Hessian eigenvalue(s) "
                  f"(lowest two {lowest:.3f}, {second:.3f} eV/Å²): {kind}")  # fmt: skip


def stored_table(args: argparse.Namespace) -> None:
    """The table of every hop whose plain (IDPP) and accelerated runs are stored in ``--out``
    (the linear band where it is); computes nothing (``--table``)."""
    folders = [(f"{k}-sevenn", HOPS[k], IMAGES[k]) for k in HOPS]
    rows = []
    for key, spec, images in [*folders, (QE_KEY, QE_HOP, QE_IMAGES)]:
        folder = Path(args.out) / key
        names = ("plain-idpp", "accelerated", "plain-linear", "plain-idpp-escape")
        runs = {n: json.loads((folder / f"{n}.json").read_text())
                for n in names if (folder / f"{n}.json").is_file()}  # fmt: skip
        if len(set(runs) & set(names[:2])) < 2:
            print(f"# {key}: not finished (stored: {', '.join(runs) or 'nothing'})")
            continue
        row = {"hop": hop_atoms(*spec)[2], "runs": runs, "images": images, "saddles": {}}
        for tag in ("", "-escape"):
            if (folder / f"saddles{tag}.json").is_file():
                row["saddles"].update(json.loads((folder / f"saddles{tag}.json").read_text()))
        _verdict(row)
        rows.append(row)
    print_table(rows, "SevenNet-0 (cheap CHGNet); pw.x fast, Γ (cheap CHGNet)")


def ml_part(args: argparse.Namespace) -> None:
    """SevenNet-0 as the expensive stand-in, CHGNet as the cheap potential."""
    from perovflow.workflows.calculators import mlip_calculator

    expensive_model, cheap_model = ("chgnet", "sevenn") if args.swap else ("sevenn", "chgnet")
    expensive, cheap = mlip_calculator(expensive_model), mlip_calculator(cheap_model)
    rows, images = [], args.images
    for key in args.only or list(HOPS):
        args.images = images or IMAGES[key]
        args.endpoint_fmax = ENDPOINT_FMAX.get(key)
        hop = hop_atoms(*HOPS[key])
        print(f"# {hop[2]}: expensive={expensive_model}, cheap={cheap_model}", flush=True)
        tag = f"{key}-{expensive_model}"
        rows.append(compare(tag, hop, lambda _: lambda i: expensive, cheap, expensive, args))
    args.images = images
    print_table(rows, f"{expensive_model} (cheap {cheap_model})")


def qe_part(args: argparse.Namespace, seed: bool = False) -> None:
    """pw.x as the expensive calculator: ``fast`` (2x2x2 CsBr, Γ) or the seed protocol."""
    from perovflow.workflows.calculators import calculator_factory, mlip_calculator

    spec = HOPS["cl"] if seed else QE_HOP
    protocol, overrides = ("seed", {}) if seed else ("fast", {"kpts": None})  # None: Γ trick
    charge = 0.0 if seed else QE_CHARGE
    hop = hop_atoms(*spec)
    key = "cl-pwx-seed" if seed else QE_KEY
    folder = Path(args.out) / key
    print(f"# {hop[2]}: expensive=pw.x ({protocol}) in {folder}, cheap=chgnet", flush=True)
    if args.dry_run:
        from perovflow.engines.protocols import get_protocol

        print(json.dumps({"atoms": len(hop[0]), "protocol": protocol, "images": args.images,
                          "neb": get_protocol(protocol, None)["neb"]}, default=str))  # fmt: skip
        return

    def expensive_for(procedure: str):
        return calculator_factory("qe", folder / f"{procedure}-run", protocol, overrides, charge)

    check = expensive_for("check")(1)
    row = compare(key, hop, expensive_for, mlip_calculator("chgnet"), check, args)
    print_table([row], f"pw.x {protocol}")


def main() -> None:
    """Parse arguments, run the parts, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=list(HOPS), help="Run only this hop.")
    parser.add_argument("--swap", action="store_true", help="CHGNet expensive, SevenNet cheap.")
    parser.add_argument("--qe", action="store_true", help="Also the pw.x hop (fast, CsBr).")
    parser.add_argument("--dft-seed", action="store_true", help="Cl hop, pw.x, seed protocol.")
    parser.add_argument("--dry-run", action="store_true", help="With --dft-seed: set-up only.")
    parser.add_argument("--no-ml", action="store_true", help="Skip the ML stand-in hops.")
    parser.add_argument(
        "--images", type=int, default=None, help="Intermediate images (IMAGES; pw.x: QE_IMAGES)."
    )
    parser.add_argument("--fmax", type=float, default=0.05, help="Force threshold, eV/Å.")
    parser.add_argument("--steps", type=int, default=1000, help="Step cap of the plain CI-NEB.")
    parser.add_argument("--out", default="benchmarks/results/neb", help="Results, call logs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log NEB progress.")
    parser.add_argument("--table", action="store_true", help="Print the stored table only.")
    args = parser.parse_args()
    if args.table:
        return stored_table(args)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s"
    )
    from perovflow.progress import Progress, show_progress

    start = time.perf_counter()
    images = args.images
    with Progress("NEB benchmark", show=show_progress()):  # NEB max force from its log
        if not args.no_ml and not args.dft_seed:
            ml_part(args)
        if args.qe:
            args.images = images or QE_IMAGES
            qe_part(args)
        if args.dft_seed:
            args.images = images or 9
            qe_part(args, seed=True)
    print(f"total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
