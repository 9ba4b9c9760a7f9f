"""NEB benchmark: expensive force calls of the seed's plain CI-NEB vs perovflow's accelerated NEB.

Both procedures start from the same unrelaxed end points of the same hop, relax them, and
stop at the same test (every image's NEB force below ``fmax`` with the climbing image on,
evaluated with the expensive calculator). Counted: every expensive energy+force call,
end points included.

* plain (seed 004): linear interpolation, 9 images, CI-NEB (FIRE) from scratch, end points
  relaxed with BFGS - all with the expensive calculator.
* accelerated: IDPP, band converged with a cheap ML potential (climbing image switched on
  late), then refined on ``cheap + (expensive - cheap at the images)`` inside a trust
  radius; end points relaxed the same way.

Part 1 (default): the expensive calculator is a stand-in - a *different* ML potential
(SevenNet-0) from the cheap one (CHGNet 0.3); hops: the Cl hop in Cs2NaBiCl6 (40-atom
conventional cell, 39 atoms with the vacancy) and the Br hop in Cs4PbBr6 (22-atom primitive
cell, 21 atoms). ``--swap`` exchanges the roles.
Part 2 (``--qe``): real pw.x at the fast protocol (25 Ry, Gamma point) on the Br hop in the
5-atom cubic CsPbBr3 cell (4 atoms with the vacancy), 3 images (``--qe-images``), so that
the plain procedure finishes in minutes.

Usage: python benchmarks/bench_neb.py [--only cl|br] [--swap] [--qe] [--images 9]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")

HOPS = {
    "cl": ("Cs2NaBiCl6", "conventional", "Cl"),
    "br": ("Cs4PbBr6", "primitive", "Br"),
}


def hop_atoms(prototype: str, cell: str, element: str) -> tuple[Any, Any, str]:
    """Unrelaxed end points of the shortest symmetry-distinct hop (ASE Atoms) and its label."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from perovflow.structures.paths import enumerate_hops, hop_endpoints
    from perovflow.structures.prototypes import build_prototype

    host = build_prototype(prototype, cell=cell)
    hop = min(enumerate_hops(host, element), key=lambda h: h.length)
    initial, final = hop_endpoints(host, hop)
    label = f"{prototype} ({len(host)}-atom {cell} cell) {hop.label}, {hop.length:.2f} Å"
    return AseAtomsAdaptor.get_atoms(initial), AseAtomsAdaptor.get_atoms(final), label


def saddle_index(result, calc) -> tuple[int, float]:
    """Negative Hessian eigenvalues at the highest image (finite differences, ASE Vibrations)."""
    import tempfile

    import numpy as np
    from ase.vibrations import Vibrations

    ts = result.images[result.ts_index].copy()
    ts.calc = calc
    with tempfile.TemporaryDirectory() as tmp:
        vib = Vibrations(ts, name=f"{tmp}/vib", delta=0.01)
        vib.run()
        hessian = vib.get_vibrations().get_hessian_2d()
    eig = np.linalg.eigvalsh(0.5 * (hessian + hessian.T))
    return int(np.sum(eig < -0.01)), float(eig[0])


def full_band_check(result, calc, fmax: float) -> tuple[float, int]:
    """Plain CI-NEB of the whole band with the expensive calculator, started from ``result``.

    Confirms that the accelerated saddle lies on a converged expensive band: returns that
    band's barrier and the calls it took (a check, not part of either procedure's count).
    """
    from perovflow.workflows.neb import band_energies, optimize_band
    from perovflow.workflows.neb_calcs import CallCounter, CountingCalculator

    band = [result.images[0], *[im.copy() for im in result.images[1:-1]], result.images[-1]]
    counter = CallCounter()
    for image in band[1:-1]:
        image.calc = CountingCalculator(calc, counter)
    optimize_band(band, fmax, 1000, climb=True)
    energies = band_energies(band)
    return max(energies) - energies[0], counter.calls


def compare(
    initial, final, expensive_for, cheap, nimages: int, fmax: float, label: str, check=None
) -> list[dict]:
    """Run both procedures on one hop (``expensive_for(procedure)`` -> calculator factory).

    When the barriers differ by more than 0.02 eV and ``check`` (the expensive calculator)
    is given, the accelerated band is re-converged whole with the expensive calculator, and
    each highest image is tested for being a first-order saddle (one negative Hessian
    eigenvalue) with its absolute energy printed: two procedures may end on different saddles.
    """
    from perovflow.workflows.neb import accelerated_neb, plain_neb

    plain = plain_neb(
        initial, final, expensive_for("plain"), nimages=nimages, fmax=fmax, steps=1000
    )
    fast = accelerated_neb(
        initial, final, expensive_for("accelerated"), cheap, nimages=nimages, fmax=fmax
    )
    rows = []
    for res in (plain, fast):
        s = res.summary()
        rows.append({"hop": label, "procedure": res.procedure, "expensive_calls": s["expensive_calls"],
                     "endpoint_calls": s["endpoint_calls"], "cheap_calls": s["cheap_calls"],
                     "expensive_s": round(res.expensive_seconds, 1), "wall_s": s["wall_s"],
                     "barrier_eV": s["barrier_eV"], "converged": s["converged"]})  # fmt: skip
    delta = fast.forward_barrier_eV - plain.forward_barrier_eV
    rows.append({"hop": label, "procedure": "ratio plain/accelerated",
                 "expensive_calls": round(plain.expensive_calls / max(fast.expensive_calls, 1), 2),
                 "barrier_eV": round(delta, 4)})  # fmt: skip
    if check is not None and abs(delta) > 0.02:
        barrier, calls = full_band_check(fast, check, fmax)
        print(f"# check: whole-band expensive CI-NEB from the accelerated band -> barrier "
              f"{barrier:.4f} eV ({calls} calls, not counted above)")  # fmt: skip
        for res in (plain, fast):
            n_neg, lowest = saddle_index(res, check)
            print(f"# {res.procedure}: highest image E = {max(res.energies):.4f} eV (initial "
                  f"{res.energies[0]:.4f}), {n_neg} negative Hessian eigenvalue(s), lowest "
                  f"{lowest:.3f} eV/Å² - {'first-order saddle' if n_neg == 1 else 'not a first-order saddle'}")  # fmt: skip
    return rows


def ml_part(args: argparse.Namespace) -> list[dict]:
    """Part 1: SevenNet-0 as the expensive stand-in, CHGNet as the cheap potential."""
    from perovflow.workflows.calculators import mlip_calculator

    expensive_model, cheap_model = ("chgnet", "sevenn") if args.swap else ("sevenn", "chgnet")
    expensive, cheap = mlip_calculator(expensive_model), mlip_calculator(cheap_model)
    rows = []
    for key in args.only or list(HOPS):
        initial, final, label = hop_atoms(*HOPS[key])
        print(f"# {label}: expensive={expensive_model}, cheap={cheap_model}", flush=True)
        rows += compare(
            initial, final, lambda _: lambda i: expensive, cheap, args.images, args.fmax, label,
            check=expensive,
        )  # fmt: skip
    return rows


def qe_part(args: argparse.Namespace) -> list[dict]:
    """Part 2: real pw.x (fast protocol, Gamma only) on the Br hop of the 5-atom CsPbBr3 cell."""
    import tempfile

    from perovflow.workflows.calculators import calculator_factory, mlip_calculator

    initial, final, label = hop_atoms("CsPbBr3-cubic", "primitive", "Br")
    folder = tempfile.mkdtemp(prefix="bench-neb-qe-")
    print(f"# {label}: expensive=pw.x (fast, Gamma point) in {folder}, cheap=chgnet", flush=True)

    def expensive_for(procedure: str):
        return calculator_factory("qe", f"{folder}/{procedure}", "fast", {"kpts": [1, 1, 1]})

    check = expensive_for("check")(1)
    return compare(initial, final, expensive_for, mlip_calculator("chgnet"), args.qe_images,
                   args.fmax, label, check=check)  # fmt: skip


def print_rows(rows: list[dict]) -> None:
    """Fixed-width table."""
    from perovflow.cli._common import table

    print(table(rows, ["hop", "procedure", "expensive_calls", "endpoint_calls", "cheap_calls",
                       "expensive_s", "wall_s", "barrier_eV", "converged"]))  # fmt: skip


def main() -> None:
    """Parse arguments, run the parts, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=list(HOPS), help="Run only this hop.")
    parser.add_argument("--swap", action="store_true", help="CHGNet expensive, SevenNet cheap.")
    parser.add_argument("--qe", action="store_true", help="Also run part 2 with real pw.x.")
    parser.add_argument("--no-ml", action="store_true", help="Skip part 1.")
    parser.add_argument("--images", type=int, default=9, help="Intermediate images (seed: 9).")
    parser.add_argument("--qe-images", type=int, default=3, help="Images for the pw.x part.")
    parser.add_argument(
        "--fmax", type=float, default=0.05, help="Force threshold, eV/Å (seed: 0.05)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Log NEB progress.")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s"
    )
    start = time.perf_counter()
    if not args.no_ml:
        print_rows(ml_part(args))
    if args.qe:
        print_rows(qe_part(args))
    print(f"total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
