"""The pw.x run behind a projwfc.x run: where its facts come from, and the per-state layout.

:func:`read_run_info` takes the run's ``data-file-schema.xml`` (the file projwfc.x read,
:mod:`perovflow.engines.qe.xml`), else its pw.x standard output
(:mod:`perovflow.engines.qe.pwout`). :func:`state_layout` turns those facts into what
:class:`~perovflow.projections.StateProjections` holds per state, in projwfc.x's
order (spin, k, band): spin channel, k index within the channel, k weight (sum 1 per
channel), occupation (0..1 per channel; one electron per state for non-collinear runs), and
the Fermi level (the HOMO for fixed occupations).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from perovflow.engines.qe.files import find_data_file, find_pw_output
from perovflow.engines.qe.pwout import read_pw_info
from perovflow.errors import InputError


def read_run_info(folder: Path, pw_output: str | Path | None, projwfc_text: str = "") -> dict:
    """Facts of the pw.x run behind a projwfc.x run: its XML data file, else its stdout.

    ``pw_output`` (a pw.x standard output or a ``data-file-schema.xml``) wins; otherwise
    the data file projwfc.x read (:func:`~perovflow.engines.qe.files.find_data_file`), else
    the pw.x output in ``folder``. Returns :func:`~perovflow.engines.qe.xml.read_pw_xml`'s
    dict (``source``: ``xml``, ``stdout`` or None when nothing was found).
    """
    from perovflow.engines.qe.xml import read_pw_xml

    if pw_output is not None and str(pw_output).endswith(".xml"):
        return {**read_pw_xml(pw_output), "source": "xml"}
    if pw_output is None:
        xml = find_data_file(folder, projwfc_text)
        if xml is not None:
            return {**read_pw_xml(xml), "source": "xml"}
        pw_output = find_pw_output(folder)
    info = read_pw_info(pw_output)
    return {**info, "source": None if pw_output is None else "stdout"}


def run_meta(run: dict) -> dict:
    """What the task document keeps of the pw.x run (spin flags, levels, where from)."""
    nspin = run["nspin"] or (4 if run["noncollinear"] else (2 if run["lsda"] else 1))
    return {
        "pw_output": run["path"],
        "run_info": run["source"],
        "homo_eV": run["homo_eV"],
        "lumo_eV": run["lumo_eV"],
        "nelec": run["nelec"],
        "nspin": nspin,
        "noncolin": bool(run["noncollinear"]),
        "noncollinear": bool(run["noncollinear"]),
        "lspinorb": bool(run["lspinorb"]),
    }


def state_layout(run: dict, nk: int, nbnd: int, energies: np.ndarray, src: str) -> dict:
    """Spin channel, k index within it, k weight, occupation of each state; Fermi level."""
    nchan = 2 if run["lsda"] else 1
    if nk % nchan:
        raise InputError(
            f"{src} lists {nk} k-points, which cannot be split into two spin channels",
            "give the data file of the same (LSDA) run",
        )
    nks = nk // nchan
    spins = np.repeat(np.arange(nchan), nks * nbnd)
    kindex = np.tile(np.repeat(np.arange(nks), nbnd), nchan)
    wk = run["kweights"]
    if wk is not None and len(wk) == nk and nchan == 2:  # pw.x stdout lists both spins
        wk = wk[:nks] / wk[:nks].sum()
    if wk is None or len(wk) != nks:
        wk = np.full(nks, 1.0 / nks)
    if run["occupations"] is not None:
        occ = _xml_occupations(run, (nchan, nks, nbnd), energies, src)
        homo, fermi = run["homo_eV"], run["fermi_eV"]
        ref = homo if homo is not None else (np.mean(fermi) if fermi is not None else None)
        fermi_ref = None if ref is None else float(ref)
    else:
        fermi_ref, occ = _occupations(run, energies, spins, nbnd)
    return {
        "spins": spins,
        "kindex": kindex,
        "kweights": np.asarray(wk, dtype=float)[kindex],
        "occupations": occ,
        "fermi_eV": fermi_ref,
    }


def _xml_occupations(run: dict, shape: tuple, energies: np.ndarray, src: str) -> np.ndarray:
    """The data file's occupations in projwfc.x's state order, checked against its energies."""
    eig = run["eigenvalues_eV"]
    if eig.shape != shape or np.abs(eig.reshape(-1) - energies).max() > 2e-3:
        raise InputError(
            f"{run['path']} does not belong to the run of {src} (bands {eig.shape} vs {shape}, "
            "or other eigenvalues)",
            "rerun projwfc.x after the last pw.x run, or give pw_output explicitly",
        )
    return np.asarray(run["occupations"], dtype=float).reshape(-1)


def _occupations(
    run: dict, energies: np.ndarray, spins: np.ndarray, nbnd: int
) -> tuple[float | None, np.ndarray | None]:
    """Occupation (0/1) of each state from the printed HOMO or Fermi level, or None."""
    fermi = run["fermi_eV"]
    if run["homo_eV"] is not None:
        return run["homo_eV"], (energies <= run["homo_eV"] + 1e-4).astype(float)
    if isinstance(fermi, list):
        per_state = np.where(spins == 0, fermi[0], fermi[1])
        return float(np.mean(fermi)), (energies <= per_state).astype(float)
    if fermi is not None:
        return float(fermi), (energies <= fermi).astype(float)
    if run["nelec"] is not None:
        per_band = 1.0 if (run["noncollinear"] or run["lsda"]) else 2.0
        nocc = round(run["nelec"] / per_band)
        if not run["lsda"] and abs(nocc * per_band - run["nelec"]) < 1e-6:
            occ = (np.arange(len(energies)) % nbnd < nocc).astype(float)
            return float(energies[occ > 0].max()), occ
    return None, None
