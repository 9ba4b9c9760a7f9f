"""Matplotlib helpers: headless backend, one publication style, atomic PNG writes.

:func:`band_dos_figure` draws a band structure the way sumo (Ganose et al., JOSS 3, 717
(2018)) does: energies from the VBM, the path's labelled points as ticks (``B₁|B`` at a
jump), band and DOS panels side by side sharing the energy axis, in-gap levels marked.
"""

from __future__ import annotations

import os
import tempfile
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

#: the style of every figure: paper-sized, readable 9-10 pt fonts, inward ticks (sumo-like)
STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.labelsize": 10,
    "axes.linewidth": 0.8,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "xtick.direction": "in",
    "ytick.direction": "in",
    "legend.fontsize": 8,
    "legend.frameon": False,
    "savefig.dpi": 200,
    "mathtext.default": "regular",
}
BAND_COLOUR = "#3952a3"
LEVEL_COLOUR = "#e67e22"
FILE_MODE = 0o644


def new_figure(width: float = 5.0, height: float = 3.5, **kwargs: Any) -> tuple[Any, Any]:
    """A new (figure, axes) pair on the non-interactive Agg backend, in :data:`STYLE`."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(width, height), dpi=120, **kwargs)
    return fig, ax


def readable_mode() -> int:
    """0644 less the process umask (what a plain ``open()`` would give)."""
    umask = os.umask(0)
    os.umask(umask)
    return FILE_MODE & ~umask


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``path`` through a temporary file (mode 0644), then close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        with plt.rc_context(STYLE):
            fig.tight_layout()
            fig.savefig(tmp, format="png")
        os.chmod(tmp, readable_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        plt.close(fig)
    return path


def path_distances(
    kfrac: np.ndarray, recip: np.ndarray, labels: dict[int, str]
) -> tuple[np.ndarray, list[tuple[float, str]], list[int]]:
    """Distance along the path (Å⁻¹), merged ticks and the indices where the path jumps.

    Two adjacent labelled k-points are a jump of the path (``B₁|B``): the distance does
    not grow between them, their labels share a tick, and no line joins them.
    """
    from perovflow.structures.kpath import mathtext_label

    cart = np.asarray(kfrac, dtype=float) @ np.asarray(recip, dtype=float)
    steps = np.linalg.norm(np.diff(cart, axis=0), axis=1)
    jumps = [i for i in range(1, len(cart)) if i in labels and (i - 1) in labels]
    steps[[i - 1 for i in jumps]] = 0.0
    dist = np.concatenate([[0.0], np.cumsum(steps)])
    ticks: list[tuple[float, list[str]]] = []
    for i in sorted(labels):
        if ticks and abs(ticks[-1][0] - dist[i]) < 1e-9:
            if labels[i] not in ticks[-1][1]:
                ticks[-1][1].append(labels[i])
        else:
            ticks.append((float(dist[i]), [labels[i]]))
    return dist, [(d, mathtext_label("|".join(names))) for d, names in ticks], jumps


def _band_panel(ax: Any, dist: np.ndarray, bands: dict[str, np.ndarray], zero: float, ticks, jumps):
    edges = [0, *jumps, len(dist)]
    for spin, eig in bands.items():
        style = "-" if spin == "up" else "--"
        for band in np.asarray(eig) - zero:
            for lo, hi in pairwise(edges):
                ax.plot(dist[lo:hi], band[lo:hi], style, color=BAND_COLOUR, lw=1.0)
    for d, _ in ticks:
        ax.axvline(d, color="0.6", lw=0.6)
    ax.axhline(0.0, color="0.3", lw=0.6, ls=":")
    ax.set_xticks([d for d, _ in ticks], [name for _, name in ticks])
    ax.set_xlim(dist[0], dist[-1])
    ax.set_ylabel(r"$E - E_\mathrm{VBM}$ (eV)")


def _dos_panel(ax: Any, dos: Any, zero: float, window: tuple[float, float]) -> None:
    energies = np.asarray(dos.energies) + dos.reference_eV - zero
    keep = (energies >= window[0]) & (energies <= window[1])
    top = float(np.max(np.asarray(dos.total)[keep])) if keep.any() else 1.0
    ax.fill_betweenx(energies, 0, dos.total, color="0.85", lw=0, label="total")
    for name, curve in dos.curves.items():
        ax.plot(curve, energies, lw=1.0, label=name)
    ax.set_xlim(0, 1.05 * top)
    ax.set_xticks([])
    ax.set_xlabel("DOS")
    ax.legend(loc="best")


def band_dos_figure(
    kfrac: np.ndarray,
    recip: np.ndarray,
    labels: dict[int, str],
    bands: dict[str, np.ndarray],
    zero_eV: float,
    path: str | Path,
    dos: Any = None,
    levels: list[tuple[float, str]] | None = None,
    window: tuple[float, float] = (-3.0, 4.0),
) -> Path:
    """Bands along the labelled path (plus an optional DOS panel) as a PNG.

    Parameters
    ----------
    kfrac, recip, labels
        Fractional k-points, reciprocal lattice (rows, Å⁻¹), index -> label.
    bands
        ``"up"``/``"down"`` -> (n_bands, n_k) energies (eV, absolute).
    zero_eV
        Absolute energy of the VBM (the plot's zero).
    dos
        A :class:`~perovflow.analysis.pdos.PDOSResult` drawn beside the bands.
    levels
        (absolute energy, label) of defect or in-gap levels, drawn as dashed lines.
    window
        Energy range (eV from the VBM).
    """
    import matplotlib.pyplot as plt

    dist, ticks, jumps = path_distances(kfrac, recip, labels)
    with plt.rc_context(STYLE):
        if dos is None:
            fig, ax = new_figure(3.6, 3.4)
            axes = [ax]
        else:
            fig, axes = new_figure(5.0, 3.4, ncols=2, sharey=True, width_ratios=[2.6, 1.0])
        _band_panel(axes[0], dist, bands, zero_eV, ticks, jumps)
        if dos is not None:
            _dos_panel(axes[1], dos, zero_eV, window)
        for energy, name in levels or []:
            for ax in axes:
                ax.axhline(energy - zero_eV, color=LEVEL_COLOUR, lw=1.0, ls="--")
            axes[-1].annotate(
                name, (1.0, energy - zero_eV), xycoords=("axes fraction", "data"),
                xytext=(-2, 2), textcoords="offset points", ha="right", va="bottom",
                color=LEVEL_COLOUR, fontsize=8,
            )  # fmt: skip
        axes[0].set_ylim(*window)
        if dos is not None:
            fig.subplots_adjust(wspace=0.05)
    return save_figure(fig, path)


def plot_ipr(result: Any, path: str | Path, reference: str | float = "vbm") -> Path:
    """Energy vs IPR of an :class:`~perovflow.analysis.ipr.IPRResult`, each state coloured by its largest atom-group share (seed figure).

    Spin-polarised results mark spin up with ▲ and spin down with ▼; empty states are
    drawn hollow. The top axis gives the participation number 1/IPR (atoms per state).
    """
    if isinstance(reference, int | float) and not isinstance(reference, bool):
        ref = float(reference)
    else:
        ref = result.vbm_eV if reference == "vbm" and result.vbm_eV is not None else 0.0
    fig, ax = new_figure(4.5, 5.0)
    dominant = np.nan_to_num(result.group_shares).argmax(axis=1)
    polarized = len(set(np.asarray(result.spins).tolist())) > 1
    occ = result.occupations
    filled = np.ones(len(result.ipr), bool) if occ is None else np.asarray(occ) > 0.5
    for g, name in enumerate(result.group_names):
        first = True
        for spin, marker in ((0, "^" if polarized else "o"), (1, "v")):
            for full in (True, False):
                m = (dominant == g) & (result.spins == spin) & (filled == full)
                if not m.any():
                    continue
                ax.scatter(
                    result.ipr[m], result.energies[m] - ref, s=14, marker=marker,
                    edgecolors=f"C{g}", facecolors=f"C{g}" if full else "none",
                    label=name if first else None,
                )  # fmt: skip
                first = False
    ax.axvline(result.threshold, color="grey", ls="--", lw=0.8, label=f"IPR={result.threshold:.3g}")
    if result.cbm_eV is not None and result.vbm_eV is not None:
        ax.axhline(result.cbm_eV - ref, color="k", lw=0.5, ls=":")
        ax.axhline(result.vbm_eV - ref, color="k", lw=0.5, ls=":")
    ax.set_xlabel("IPR" + ("  (▲ spin up, ▼ spin down; hollow: empty)" if polarized else ""))
    ax.set_ylabel("E - VBM (eV)" if ref else "E (eV)")
    top = ax.secondary_xaxis("top", functions=(_inverse, _inverse))
    top.set_xticks([1, 1.5, 2, 3, 5, 10])
    top.set_xlabel("participation number 1/IPR (atoms)")
    ax.legend(fontsize=7, title="largest share")
    return save_figure(fig, path)


def _inverse(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 1.0 / np.maximum(np.asarray(x, dtype=float), 1e-3)
