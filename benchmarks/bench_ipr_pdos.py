"""Benchmark: IPR + PDOS for 2,000 atoms x 10,000 states, and projwfc.x output parsing.

Side by side in one run:

* vectorised IPR (chunked einsum) + PDOS (group matrix product + Gaussian block products)
  against a straightforward per-state Python loop doing the same arithmetic;
* peak extra memory of the vectorised path (tracemalloc) relative to the projection array;
* parsing a synthetic projwfc.x standard output of the same size written in the real format
  (``state #`` table, ``==== e(...)`` blocks, ``psi = w*[#  n]+`` lines), against a
  line-by-line parser.

Run: ``.venv/bin/python benchmarks/bench_ipr_pdos.py [--atoms 2000 --states 10000]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from perovflow.analysis.ipr import ipr_values
from perovflow.analysis.pdos import gaussian_dos
from perovflow.analysis.projections import StateProjections


def synthetic(natoms: int, nstates: int, seed: int = 0) -> StateProjections:
    """Random non-negative weights (float32), a few states localized on few atoms."""
    rng = np.random.default_rng(seed)
    w = rng.random((nstates, natoms), dtype=np.float32) ** 8
    w[:: nstates // 20, : natoms // 100] += 5.0
    species = (["Cs", "Pb", "Br", "Br", "Br"] * (natoms // 5 + 1))[:natoms]
    energies = np.sort(rng.normal(0.0, 3.0, nstates))
    return StateProjections(energies=energies, weights=w, species=species)


def groups_matrix(species: list[str]) -> tuple[list[str], np.ndarray]:
    names = sorted(set(species))
    a = np.zeros((len(species), len(names)), dtype=np.float32)
    for i, el in enumerate(species):
        a[i, names.index(el)] = 1.0
    return names, a


def vectorised(
    p: StateProjections, grid: np.ndarray, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    ipr = ipr_values(p.weights)
    _, a = groups_matrix(p.species)
    mat = p.weights @ a
    mat /= p.weights.sum(axis=1, dtype=np.float64)[:, None].astype(np.float32)
    return ipr, gaussian_dos(p.energies, mat, grid, sigma)


def per_state_loop(
    p: StateProjections, grid: np.ndarray, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    names, _ = groups_matrix(p.species)
    idx = {n: np.array([i for i, s in enumerate(p.species) if s == n]) for n in names}
    ipr = np.empty(p.nstates)
    dos = np.zeros((len(names), grid.size))
    norm = 1.0 / (sigma * np.sqrt(2 * np.pi))
    for i in range(p.nstates):
        w = p.weights[i].astype(np.float64)
        ipr[i] = np.sum(w**4) / np.sum(w**2) ** 2
        g = norm * np.exp(-0.5 * ((grid - p.energies[i]) / sigma) ** 2)
        total = w.sum()
        for j, n in enumerate(names):
            dos[j] += w[idx[n]].sum() / total * g
    return ipr, dos


def write_projwfc(path: Path, natoms: int, nstates: int, ncomp: int = 30, seed: int = 1) -> None:
    """A projwfc.x stdout in the real format: 4 atomic wfcs per atom (s, p x3), Gamma only."""
    rng = np.random.default_rng(seed)
    nwfc = 4 * natoms
    out = [
        " " * 5 + "Program PROJWFC v.6.7MaX starts on 21Nov2026",
        "",
        "  Problem Sizes ",
        f"  natomwfc = {nwfc:12d}",
        f"  nbnd     = {nstates:12d}",
        f"  nkstot   = {1:12d}",
        "",
        "     Atomic states used for projection",
        "     (read from pseudopotential files):",
        "",
    ]
    for a in range(natoms):
        el = ("Cs", "Pb", "Br", "Br", "Br")[a % 5]
        out.append(f"     state #{4 * a + 1:5d}: atom {a + 1:5d} ({el:<3s}), wfc  1 (l=0 m= 1)")
        for m in (1, 2, 3):
            out.append(
                f"     state #{4 * a + 1 + m:5d}: atom {a + 1:5d} ({el:<3s}), wfc  2 (l=1 m= {m})"
            )
    out += ["", " k =   0.0000000000  0.0000000000  0.0000000000"]
    energies = np.sort(rng.normal(0, 3, nstates))
    for b in range(nstates):
        comps = rng.choice(nwfc, ncomp, replace=False) + 1
        vals = np.sort(rng.random(ncomp))[::-1] / ncomp
        out.append(f"==== e({b + 1:4d}) = {energies[b]:11.5f} eV ==== ")
        terms = [f"{v:5.3f}*[#{c:4d}]+" for v, c in zip(vals, comps, strict=True)]
        lines = ["     psi = " + "".join(terms[:5])]
        lines += ["          +" + "".join(terms[i : i + 5]) for i in range(5, ncomp, 5)]
        out += [*lines, f"    |psi|^2 = {vals.sum():5.3f}"]
    out += ["", "Lowdin Charges: ", "", "   JOB DONE."]
    path.write_text("\n".join(out) + "\n")


def parse_line_by_line(path: Path) -> int:
    """Baseline parser: one regex per line, Python dict accumulation."""
    import re

    comp = re.compile(r"(\d\.\d+)\*\[#\s*(\d+)\]")
    state = -1
    acc: dict[tuple[int, int], float] = {}
    with open(path) as fh:
        for line in fh:
            if line.startswith("==== e("):
                state += 1
            elif state >= 0 and "*[#" in line:
                for v, c in comp.findall(line):
                    key = (state, int(c))
                    acc[key] = acc.get(key, 0.0) + float(v)
    return state + 1


CPU: dict[str, float] = {}


def timed(fn, *args):
    """Wall time of ``fn(*args)``; its CPU time is kept in ``CPU[fn.__name__]``."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(*args)
    CPU[fn.__name__] = time.process_time() - c0
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atoms", type=int, default=2000)
    ap.add_argument("--states", type=int, default=10000)
    ap.add_argument(
        "--loop-states", type=int, default=2000, help="states timed in the loop (scaled)"
    )
    args = ap.parse_args()
    p = synthetic(args.atoms, args.states)
    grid = np.arange(-10, 10, 0.01)
    data_mb = p.weights.nbytes / 1e6
    print(f"projections: {args.states} states x {args.atoms} atoms, float32 = {data_mb:.0f} MB")

    tracemalloc.start()
    (_ipr_v, _dos_v), t_vec = timed(vectorised, p, grid, 0.1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    sub = StateProjections(p.energies[: args.loop_states], p.weights[: args.loop_states], p.species)
    (ipr_l, dos_l), t_loop_sub = timed(per_state_loop, sub, grid, 0.1)
    t_loop = t_loop_sub * args.states / args.loop_states
    (ipr_s, dos_s), _ = timed(vectorised, sub, grid, 0.1)
    assert np.allclose(ipr_s, ipr_l, rtol=1e-4) and np.allclose(dos_s, dos_l, rtol=1e-3, atol=1e-6)
    c_loop = CPU["per_state_loop"] * args.states / args.loop_states
    print(
        f"IPR+PDOS vectorised : {t_vec:7.3f} s wall, {CPU['vectorised']:.3f} s CPU (target <= 2 s)"
    )
    print(
        f"IPR+PDOS per-state  : {t_loop:7.3f} s wall, {c_loop:.3f} s CPU "
        f"(timed on {args.loop_states} states, scaled)"
    )
    print(f"speed-up            : {t_loop / t_vec:7.1f} x")
    print(
        f"peak extra memory   : {peak / 1e6:7.1f} MB = {peak / p.weights.nbytes:.2f} x the data "
        f"(target < 3 x); total incl. data {(peak + p.weights.nbytes) / p.weights.nbytes:.2f} x"
    )

    from perovflow.engines.qe.projwfc import parse_projwfc

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "projwfc.out"
        _, t_write = timed(write_projwfc, out, args.atoms, args.states)
        size = out.stat().st_size / 1e6
        proj, t_parse = timed(parse_projwfc, out, None, None, False)
        n, t_lines = timed(parse_line_by_line, out)
        assert proj.nstates == n == args.states
    print(
        f"projwfc.x stdout    : {size:.0f} MB synthetic ({args.states} states, 30 components each), "
        f"written in {t_write:.1f} s"
    )
    print(
        f"parse (regex+bincount): {t_parse:.3f} s wall, {CPU['parse_projwfc']:.3f} s CPU; "
        f"line-by-line baseline: {t_lines:.3f} s wall, {CPU['parse_line_by_line']:.3f} s CPU"
    )


if __name__ == "__main__":
    main()
