"""Band structures stored in task documents: labels by index, gap from the stored arrays."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from ase.io import read
from pymatgen.io.ase import AseAtomsAdaptor

from perovflow.analysis.bands import analyze_bands, load_bandstructure, plot_bands
from perovflow.engines.qe.projwfc import read_text


def test_stored_document_band_structure(qe_data: Path, tmp_path: Path):
    out = qe_data / "cspbbr3_bands" / "pw.out.gz"
    atoms = read(str(out), format="espresso-out", index=-1)
    kpts = atoms.calc.kpts
    frac = np.array([k.k for k in kpts])
    eig = np.array([[k.eps_n for k in kpts]])  # (spin, k, band), as the document stores it
    r = int(np.argmin(np.linalg.norm(frac - 0.5, axis=1)))  # R = (1/2, 1/2, 1/2)
    doc = {"kpoints_frac": frac.tolist(), "labels": {"0": "\\Gamma", str(r): "R"},
           "eigenvalues": eig.tolist(), "efermi_eV": None}  # fmt: skip
    structure = AseAtomsAdaptor.get_structure(atoms).as_dict()
    res = analyze_bands(load_bandstructure(doc, structure, nelec=34))
    assert res.vbm_kpoint["label"] == "R" and res.is_direct
    # the scf run on a 4x4x4 grid (which holds R) printed its own HOMO/LUMO
    scf = read_text(qe_data / "cspbbr3_scf" / "pw.out.gz")
    homo, lumo = map(float, re.findall(r"lowest unoccupied level \(ev\):\s*(\S+)\s+(\S+)", scf)[0])
    assert res.band_gap_eV == pytest.approx(lumo - homo, abs=0.01)
    assert plot_bands(doc, tmp_path / "b.png", structure, 34).stat().st_size > 10_000
