"""Projected density of states with Gaussian broadening, per atom group or orbital.

``PDOS_g(E) = sum_i kw_i * s_i * M_ig * G(E - e_i)`` where ``M = weights @ A`` sums the
state weights over the atoms of group ``g`` (``A`` from :mod:`perovflow.analysis.groups`),
``kw_i`` is the k-point weight and ``s_i`` the spin degeneracy. The Gaussian block
``G`` (states x energy grid) is built per state chunk and contracted with one matrix
product, so there is no per-state Python loop and memory stays bounded.

Weights are renormalised per state by default (``normalize=True``) so that the groups of a
state sum to one: the total DOS then counts states, not the basis' spill-over.

Spin-polarised projections give the total and every group per spin channel as well
(:attr:`PDOSResult.spin`, plotted up above the axis and down below it); ``total`` and
``curves`` are the sums of both channels. Band edges follow :mod:`perovflow.electronic`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perovflow.analysis.groups import group_matrix, resolve_groups
from perovflow.analysis.ipr import band_edges
from perovflow.errors import InputError
from perovflow.projections import L_LABELS, StateProjections

CHUNK_ELEMENTS = 4_000_000


def gaussian_dos(
    energies: np.ndarray,
    weights: np.ndarray,
    grid: np.ndarray,
    sigma: float,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> np.ndarray:
    """Broadened DOS per column of ``weights``: ``sum_i weights[i, c] * G(grid - e_i)``.

    On a uniform grid each state's Gaussian is evaluated only on the ``±6 sigma`` window of
    grid points around it, as one (states x window) block, and scattered onto the grid with
    ``np.bincount`` per column; otherwise the dense ``weights.T @ G`` product is used.

    Parameters
    ----------
    energies
        State energies (nstates,).
    weights
        Per-state weights (nstates, ncols), already multiplied by k-weights.
    grid
        Energy grid (ngrid,), ascending.
    sigma
        Gaussian standard deviation (eV).
    """
    if sigma <= 0:
        raise InputError(f"broadening sigma={sigma} eV must be positive", "use e.g. 0.05")
    energies = np.asarray(energies, dtype=np.float64)
    weights = np.asarray(weights)
    grid = np.asarray(grid, dtype=np.float64)
    norm = 1.0 / (sigma * np.sqrt(2.0 * np.pi))
    inside = np.flatnonzero((energies > grid[0] - 6 * sigma) & (energies < grid[-1] + 6 * sigma))
    step = grid[1] - grid[0] if grid.size > 1 else 0.0
    if grid.size > 1 and np.allclose(np.diff(grid), step, rtol=1e-6, atol=1e-12):
        return _windowed(energies[inside], weights[inside], grid, sigma, step) * norm
    out = np.zeros((weights.shape[1], grid.size), dtype=np.float64)
    rows = max(1, chunk_elements // max(grid.size, 1))
    for start in range(0, inside.size, rows):
        sel = inside[start : start + rows]
        x = (grid[None, :] - energies[sel, None]) / sigma
        g = np.exp(-0.5 * x * x).astype(np.float32)
        out += (weights[sel].T.astype(np.float32) @ g).astype(np.float64)
    return out * norm


#: Taylor terms kept in :func:`_windowed` stop below this (relative to the peak).
SERIES_TOLERANCE = 1e-12


def _windowed(e: np.ndarray, w: np.ndarray, grid: np.ndarray, sigma: float, step: float):
    """Uniform-grid Gaussians on a ±6 sigma window per state, by binned moments.

    State i sits at grid index ``c_i`` plus an offset ``d_i`` (|d_i| <= step/2). With
    ``x_k = k * step / sigma`` the Gaussian at ``c_i + k`` factorises exactly::

        G = exp(-x_k^2 / 2) * exp(-d_i^2 / 2 sigma^2) * sum_n x_k^n (d_i / sigma)^n / n!

    so the DOS is ``sum_n (moment_n * kernel_n)``: per column and order n one ``bincount``
    of the states into their grid bins and one short convolution with a fixed kernel. The
    series converges fast (``|x_k d_i / sigma| <= 3 step / sigma``) and is cut at
    :data:`SERIES_TOLERANCE`; no (states x window) array is built. Grids coarser than
    sigma / 2 use the direct per-state window instead.
    """
    half = int(np.ceil(6 * sigma / step))
    bound = 3.0 * step / sigma  # largest |x_k d_i / sigma| on the window
    if bound > 1.5:
        return _windowed_direct(e, w, grid, sigma, step, half)
    order, term = 1, bound
    while term > SERIES_TOLERANCE:
        order += 1
        term *= bound / order
    centre = np.rint((e - grid[0]) / step).astype(np.int64)
    d = (e - (grid[0] + centre * step)) / sigma
    bins = centre + half
    keep = (bins >= 0) & (bins < grid.size + 2 * half)
    bins, d, amp = bins[keep], d[keep], np.exp(-0.5 * d[keep] ** 2)
    wk = np.asarray(w[keep], dtype=np.float64) * amp[:, None]
    x = np.arange(-half, half + 1) * step / sigma
    kernel = np.exp(-0.5 * x * x)
    out = np.zeros((w.shape[1], grid.size), dtype=np.float64)
    nbins = grid.size + 2 * half
    for n in range(order):
        for col in range(w.shape[1]):
            moment = np.bincount(bins, weights=wk[:, col], minlength=nbins)
            out[col] += _convolve(moment, kernel)[2 * half : 2 * half + grid.size]
        wk *= d[:, None]
        kernel = kernel * x / (n + 1)
    return out


def _convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Full linear convolution: direct for short kernels, overlap-add FFT for long ones."""
    if b.size <= 256:
        return np.convolve(a, b)
    from scipy.signal import oaconvolve

    return oaconvolve(a, b)


def _windowed_direct(e, w, grid, sigma, step, half):
    """Each state's Gaussian on its ±6 sigma window, scattered with bincount."""
    offsets = np.arange(-half, half + 1)
    centre = np.rint((e - grid[0]) / step).astype(np.int64)
    idx = centre[:, None] + offsets[None, :]  # (states, window)
    x = (grid[0] + idx * step - e[:, None]) / sigma
    g = np.exp(-0.5 * x * x)
    valid = (idx >= 0) & (idx < grid.size)
    flat = np.where(valid, idx, grid.size).ravel()  # invalid points go to a dump bin
    out = np.empty((w.shape[1], grid.size), dtype=np.float64)
    for c in range(w.shape[1]):
        contrib = (g * w[:, c, None]).ravel()
        out[c] = np.bincount(flat, weights=contrib, minlength=grid.size + 1)[: grid.size]
    return out


@dataclass
class PDOSResult:
    """A broadened total and projected DOS on an energy grid.

    Attributes
    ----------
    energies
        Grid (eV), relative to ``reference_eV``.
    total
        Total DOS (states/eV per cell; spin channels summed).
    curves
        Group name -> PDOS on the grid.
    reference_eV
        Absolute energy subtracted from the grid (VBM by default).
    vbm_eV, cbm_eV
        Band edges (absolute, eV) from occupations over both spins, if known.
    spin
        Spin-polarised only: ``{"up": {"total": ..., group: ...}, "down": {...}}``.
    """

    energies: np.ndarray
    total: np.ndarray
    curves: dict[str, np.ndarray]
    reference_eV: float
    sigma_eV: float
    vbm_eV: float | None
    cbm_eV: float | None
    grouping: str
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    spin: dict[str, dict[str, np.ndarray]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (arrays as lists)."""
        spin = None
        if self.spin is not None:
            spin = {ch: {k: v.tolist() for k, v in c.items()} for ch, c in self.spin.items()}
        return {
            "spin": spin,
            "energies_eV": self.energies.tolist(),
            "total": self.total.tolist(),
            "curves": {k: v.tolist() for k, v in self.curves.items()},
            "reference_eV": self.reference_eV,
            "sigma_eV": self.sigma_eV,
            "vbm_eV": self.vbm_eV,
            "cbm_eV": self.cbm_eV,
            "grouping": self.grouping,
            "source": self.source,
        }

    def summary(self) -> dict[str, Any]:
        """Edges and the integrated weight of each group inside the grid."""
        de = float(self.energies[1] - self.energies[0]) if self.energies.size > 1 else 0.0
        return {
            "grouping": self.grouping,
            "reference_eV": self.reference_eV,
            "vbm_eV": self.vbm_eV,
            "cbm_eV": self.cbm_eV,
            "sigma_eV": self.sigma_eV,
            "integrals": {k: float(v.sum() * de) for k, v in self.curves.items()},
            "total_integral": float(self.total.sum() * de),
            "spin_integrals": None
            if self.spin is None
            else {
                ch: {k: float(v.sum() * de) for k, v in c.items()} for ch, c in self.spin.items()
            },
            "source": self.source,
        }


def _reference(
    proj: StateProjections, reference: str | float
) -> tuple[float, float | None, float | None]:
    vbm, cbm = band_edges(proj)
    if isinstance(reference, int | float) and not isinstance(reference, bool):
        return float(reference), vbm, cbm
    if reference == "vbm" and vbm is not None:
        return vbm, vbm, cbm
    if reference in ("vbm", "fermi") and proj.fermi_eV is not None:
        return float(proj.fermi_eV), vbm, cbm
    if reference == "none":
        return 0.0, vbm, cbm
    raise InputError(
        f"cannot reference energies to {reference!r}: band edges and Fermi level are unknown",
        "keep the pw.x output next to the projwfc.x output, or give --reference <eV>",
    )


def state_group_weights(
    proj: StateProjections, by: str | dict[str, list[int]] | None, normalize: bool = True
) -> tuple[list[str], np.ndarray]:
    """Per-state weight on each group (nstates, ngroups) and the group names."""
    w = proj.weights
    if by in ("orbital", "element_orbital"):
        if proj.orbital_weights is None:
            raise InputError(
                "these projections have no split by orbital (s/p/d)",
                "reparse with orbitals=True, or group by element",
            )
        orb = proj.orbital_weights
        if by == "orbital":
            mat = orb.sum(axis=1)
            names = list(L_LABELS)
        else:
            el = resolve_groups("element", proj)
            names = [f"{e}-{lab}" for e in el for lab in L_LABELS]
            a = group_matrix(el, proj.natoms, dtype=orb.dtype)
            mat = np.einsum("ial,ag->igl", orb, a).reshape(proj.nstates, -1)
        used = np.flatnonzero(mat.sum(axis=0) > 0)
        names = [names[j] for j in used]
        mat = mat[:, used]
    else:
        groups = resolve_groups(by, proj)
        names = list(groups)
        mat = w @ group_matrix(groups, proj.natoms, dtype=w.dtype)
    if normalize:
        total = w.sum(axis=1, dtype=np.float64)
        scale = np.where(total > 0, 1.0 / np.where(total > 0, total, 1.0), 0.0)
        mat = mat * scale[:, None].astype(mat.dtype)
    return names, mat


def compute_pdos(
    proj: StateProjections,
    by: str | dict[str, list[int]] | None = "element",
    sigma: float = 0.1,
    reference: str | float = "vbm",
    window: tuple[float, float] = (-6.0, 6.0),
    step: float = 0.01,
    normalize: bool = True,
) -> PDOSResult:
    """Broadened total and projected DOS.

    Parameters
    ----------
    proj
        Projections (QE projwfc, CP2K MOs).
    by
        ``element``, ``orbital`` (s/p/d/f), ``element_orbital``, ``domain``,
        ``prop:<site property>`` or a dict name -> atom indices (e.g. a defect shell from
        :func:`perovflow.analysis.groups.shell_groups`).
    sigma
        Gaussian standard deviation (eV).
    reference
        ``vbm`` (default), ``fermi``, ``none`` or an absolute energy in eV.
    window
        Energy range of the grid relative to the reference (eV).
    step
        Grid spacing (eV).
    """
    ref, vbm, cbm = _reference(proj, reference)
    e_rel = proj.energies - ref
    grid = _energy_grid(e_rel, window, step, sigma)
    names, mat = state_group_weights(proj, by, normalize)
    dos, spin = _broadened(proj, e_rel, names, mat, grid, sigma)
    return PDOSResult(
        spin=spin or None,
        energies=grid,
        total=dos[0],
        curves={n: dos[j + 1] for j, n in enumerate(names)},
        reference_eV=ref,
        sigma_eV=sigma,
        vbm_eV=vbm,
        cbm_eV=cbm,
        grouping=by if isinstance(by, str) else "custom",
        source=proj.source,
    )


def _energy_grid(
    e_rel: np.ndarray, window: tuple[float, float], step: float, sigma: float
) -> np.ndarray:
    """Grid over ``window`` (eV from the reference); an empty grid or window is an error."""
    lo, hi = sorted(window)
    if step <= 0 or hi - lo < step:
        raise InputError(f"energy grid {window} with step {step} is empty", "widen the window")
    if not ((e_rel >= lo - 3 * sigma) & (e_rel <= hi + 3 * sigma)).any():
        raise InputError(
            f"no state in the energy window [{lo:g}, {hi:g}] eV "
            f"(states span {e_rel.min():.2f} to {e_rel.max():.2f} eV relative to the reference)",
            "widen the window or change the reference",
        )
    return np.arange(lo, hi + step / 2, step)


def _broadened(
    proj: StateProjections,
    e_rel: np.ndarray,
    names: list[str],
    mat: np.ndarray,
    grid: np.ndarray,
    sigma: float,
) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
    """Gaussian-broadened [total, groups...] DOS, and per spin channel when spin-polarised.

    States weigh their k weight, times 2 for spin-restricted collinear runs.
    """
    degeneracy = (
        2.0 if (np.all(np.asarray(proj.spins) == 0) and not proj.meta.get("noncollinear")) else 1.0
    )
    kw = np.asarray(proj.kweights, dtype=np.float64) * degeneracy
    stacked = np.concatenate([kw[:, None], mat * kw[:, None].astype(mat.dtype)], axis=1)
    spins = np.asarray(proj.spins)
    channels = {"up": spins == 0, "down": spins == 1} if (spins == 1).any() else {}
    per_spin = {ch: gaussian_dos(e_rel[m], stacked[m], grid, sigma) for ch, m in channels.items()}
    dos = sum(per_spin.values()) if per_spin else gaussian_dos(e_rel, stacked, grid, sigma)
    spin = {ch: {"total": d[0], **{n: d[j + 1] for j, n in enumerate(names)}}
            for ch, d in per_spin.items()}  # fmt: skip
    return dos, spin


def plot_pdos(result: PDOSResult, path: str | Path, total: bool = True) -> Path:
    """Total and projected DOS vs energy (relative to the reference) as PNG."""
    from perovflow.analysis.plots import new_figure, save_figure

    fig, ax = new_figure(5.5, 3.5)
    if result.spin is not None:  # spin up above the axis, spin down mirrored below it
        _plot_spin(ax, result, total)
    else:
        if total:
            ax.fill_between(result.energies, result.total, color="0.85", label="total")
        for name, curve in result.curves.items():
            ax.plot(result.energies, curve, lw=1.2, label=name)
    for edge in (result.vbm_eV, result.cbm_eV):
        if edge is not None:
            ax.axvline(edge - result.reference_eV, color="k", lw=0.5, ls=":")
    ax.set_xlabel("E - E_ref (eV)")
    ax.set_ylabel("DOS (states/eV)" + (", ↑ up / ↓ down" if result.spin is not None else ""))
    ax.set_xlim(result.energies[0], result.energies[-1])
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def _plot_spin(ax: Any, result: PDOSResult, total: bool) -> None:
    """Spin-up curves above zero, spin-down curves mirrored below, one colour per group."""
    up, down = result.spin["up"], result.spin["down"]
    if total:
        ax.fill_between(result.energies, up["total"], color="0.85", label="total")
        ax.fill_between(result.energies, -down["total"], color="0.85")
    for name in result.curves:
        (line,) = ax.plot(result.energies, up[name], lw=1.2, label=name)
        ax.plot(result.energies, -down[name], lw=1.2, color=line.get_color())
    ax.axhline(0.0, color="k", lw=0.5)
