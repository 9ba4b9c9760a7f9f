"""Benchmark: IPR + PDOS for 2,000 atoms x 10,000 states, and projwfc.x output parsing.

Side by side in one run:

* the library path, ``ipr_values`` (IPR = sum p^2 / (sum p)^2) + ``compute_pdos`` by element
  (group sums, Gaussian broadening on a 0.01 eV grid), against a straightforward per-state
  Python loop doing the same arithmetic (timed on a subset and scaled);
* peak extra memory of the library path (tracemalloc, in a separate untimed run);
* parsing a synthetic projwfc.x standard output of the same size written in the real format
  (``state #`` table, ``==== e(...)`` blocks, ``psi = w*[#  n]+`` lines) with
  ``parse_projwfc``, against a bare line-by-line Python scan of the same file.

Wall times are the median of ``--repeat`` runs after one warm-up (imports, page cache),
CPU times alongside; the load average is printed because on a shared machine wall time
includes waiting for a core.

Run: ``.venv/bin/python benchmarks/bench_ipr_pdos.py [--atoms 2000 --states 10000]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from perovflow.analysis.ipr import ipr_values
from perovflow.analysis.pdos import compute_pdos
from perovflow.projections import StateProjections


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
    """The library path: IPR of every state, PDOS by element on ``grid``."""
    ipr = ipr_values(p.weights)
    step = float(grid[1] - grid[0])
    res = compute_pdos(
        p, by="element", sigma=sigma, reference="none", window=(grid[0], grid[-1]), step=step
    )
    return ipr, np.array([res.curves[n] for n in sorted(res.curves)])


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
        ipr[i] = np.sum(w**2) / np.sum(w) ** 2
        g = norm * np.exp(-0.5 * ((grid - p.energies[i]) / sigma) ** 2)
        total = w.sum()
        for j, n in enumerate(names):
            dos[j] += 2.0 * w[idx[n]].sum() / total * g  # 2: spin degeneracy, as compute_pdos
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


def timed(fn, *args, repeat: int = 1):
    """Median wall and CPU time of ``repeat`` calls of ``fn(*args)`` after one warm-up."""
    out = fn(*args)
    walls, cpus = [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn(*args)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return out, float(np.median(walls)), float(np.median(cpus))


def peak_memory(fn, *args) -> int:
    """Peak bytes allocated (tracemalloc) during one call of ``fn(*args)``."""
    tracemalloc.start()
    fn(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atoms", type=int, default=2000)
    ap.add_argument("--states", type=int, default=10000)
    ap.add_argument(
        "--loop-states", type=int, default=2000, help="states timed in the loop (scaled)"
    )
    ap.add_argument("--repeat", type=int, default=5, help="timed runs (median reported)")
    args = ap.parse_args()
    p = synthetic(args.atoms, args.states)
    grid = np.arange(-10, 10, 0.01)
    data_mb = p.weights.nbytes / 1e6
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"projections: {args.states} states x {args.atoms} atoms, float32 = {data_mb:.0f} MB")

    (_ipr_v, _dos_v), t_vec, c_vec = timed(vectorised, p, grid, 0.1, repeat=args.repeat)
    peak = peak_memory(vectorised, p, grid, 0.1)
    sub = StateProjections(p.energies[: args.loop_states], p.weights[: args.loop_states], p.species)
    (ipr_l, dos_l), t_loop_sub, c_loop_sub = timed(per_state_loop, sub, grid, 0.1)
    scale = args.states / args.loop_states
    ipr_s, dos_s = vectorised(sub, grid, 0.1)
    assert np.allclose(ipr_s, ipr_l, rtol=1e-4) and np.allclose(dos_s, dos_l, rtol=1e-3, atol=1e-6)
    print(f"IPR+PDOS library    : {t_vec:7.3f} s wall, {c_vec:.3f} s CPU (target <= 0.1 s wall)")
    print(
        f"IPR+PDOS per-state  : {t_loop_sub * scale:7.3f} s wall, {c_loop_sub * scale:.3f} s CPU "
        f"(timed on {args.loop_states} states, scaled)"
    )
    print(f"speed-up            : {t_loop_sub * scale / t_vec:7.1f} x")
    print(
        f"peak extra memory   : {peak / 1e6:7.1f} MB = {peak / p.weights.nbytes:.2f} x the data "
        f"(target < 3 x); total incl. data {(peak + p.weights.nbytes) / p.weights.nbytes:.2f} x"
    )

    from perovflow.engines.qe.projwfc import parse_projwfc

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "projwfc.out"
        t0 = time.perf_counter()
        write_projwfc(out, args.atoms, args.states)
        t_write = time.perf_counter() - t0
        size = out.stat().st_size / 1e6
        n, t_lines, c_lines = timed(parse_line_by_line, out, repeat=args.repeat)
        proj, t_parse, c_parse = timed(parse_projwfc, out, None, None, False, repeat=args.repeat)
        assert proj.nstates == n == args.states
    print(
        f"projwfc.x stdout    : {size:.0f} MB synthetic ({args.states} states, 30 components each), "
        f"written in {t_write:.1f} s"
    )
    print(
        f"parse_projwfc       : {t_parse:7.3f} s wall, {c_parse:.3f} s CPU; line-by-line scan: "
        f"{t_lines:.3f} s wall, {c_lines:.3f} s CPU -> {t_lines / t_parse:.1f} x (target >= 3 x)"
    )


if __name__ == "__main__":
    main()
