"""Real pw.x: projwfc.x on a Γ-trick scf gives the states of scf -> nscf (Γ, full k) -> projwfc."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from qe_run import run  # helper next to this file

from perovflow.engines.qe.jobs import QEDosMaker, QEStaticMaker, QEStaticPdosMaker

pytestmark = [pytest.mark.qe, pytest.mark.cp2k]  # GTH: cp2k-data; seconds on 2 cores
TINY = {"ecutwfc": 20, "ecutrho": 80, "conv_thr": 1e-8, "nbnd": 20}


def test_scf_pdos_equals_nscf_pdos_at_gamma(tmp_path):
    # cubic CsPbBr3 (a = 5.87 Å), 34 electrons: 17 occupied bands, a wide gap at Γ
    cell = Structure(
        Lattice.cubic(5.87),
        ["Cs", "Pb", "Br", "Br", "Br"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    both = run(QEStaticPdosMaker(protocol="fast", input_set_overrides={**TINY, "kpts": "gamma"}),
               cell, tmp_path, "scf_pdos")  # fmt: skip
    # the independent route: a complex-wavefunction scf, an nscf at Γ on its density, projwfc.x
    scf = run(QEStaticMaker(protocol="fast", input_set_overrides={**TINY, "kpts": [1, 1, 1]}),
              cell, tmp_path, "scf")  # fmt: skip
    dos = run(QEDosMaker(protocol="fast", input_set_overrides={**TINY, "kpts": [1, 1, 1]}),
              cell, tmp_path, "nscf", scf.dir_name)  # fmt: skip
    assert "gamma-point specific algorithms" in (tmp_path / "scf_pdos" / "espresso.pwo").read_text()
    a, b = both.projections, dos.projections
    assert len(a["energies"]) == len(b["energies"]) == 20  # one k-point, 20 bands
    assert np.allclose(a["energies"], b["energies"], atol=2e-3)  # eV
    for wa, wb in zip(_by_level(a), _by_level(b), strict=True):  # per-atom weights per level
        assert np.allclose(wa, wb, atol=5e-3)
    assert both.dos is not None and both.files["projwfc_output"].endswith("projwfc.out")


def _by_level(proj: dict) -> list:
    """Per-atom weights summed over each degenerate level (states within 5 meV).

    Within a degenerate level the states are any orthonormal mix, so only the sum over the
    level is defined (cubic Γ: threefold Br p, Pb p levels).
    """
    energies = np.asarray(proj["energies"])
    order = np.argsort(energies)
    weights = np.asarray(proj["weights"])[order]
    cuts = np.flatnonzero(np.diff(energies[order]) > 0.005) + 1
    return [group.sum(axis=0) for group in np.split(weights, cuts)]
