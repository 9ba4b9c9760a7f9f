"""Band paths: every label at its textbook point, in the calculated cell's reciprocal basis.

The truth is typed in here from Setyawan & Curtarolo, Comput. Mater. Sci. 49, 299 (2010)
(their primitive lattice vectors and k-point tables for CUB, FCC, ORC and RHL1). The
integer matrix ``M`` between the calculated cell and the textbook cell is found here
independently, by brute force over small integer matrices, from the metric tensors
(``G_cell = M G_textbook M^T``, rotation-free); a labelled point must then sit at
``M f_textbook`` (up to a reciprocal lattice vector of the calculated cell) for one ``M``
that serves all labels at once.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from scipy.spatial.transform import Rotation

from perovflow.analysis.plots import path_distances
from perovflow.engines.qe.jobs import band_path
from perovflow.errors import InputError
from perovflow.structures.prototypes import build_prototype
from perovflow.workflows.demo import short_band_path


def _cub(a: float):
    return np.eye(3) * a, {"\\Gamma": (0, 0, 0), "X": (0, 0.5, 0), "M": (0.5, 0.5, 0),
                           "R": (0.5, 0.5, 0.5)}  # fmt: skip


def _fcc(a: float):
    lat = np.array([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    pts = {"\\Gamma": (0, 0, 0), "K": (3 / 8, 3 / 8, 3 / 4), "L": (0.5, 0.5, 0.5),
           "U": (5 / 8, 1 / 4, 5 / 8), "W": (0.5, 0.25, 0.75), "X": (0.5, 0, 0.5)}  # fmt: skip
    return lat, pts


def _orc(a: float, b: float, c: float):
    assert a < b < c  # the table's convention
    pts = {"\\Gamma": (0, 0, 0), "X": (0.5, 0, 0), "Y": (0, 0.5, 0), "Z": (0, 0, 0.5),
           "S": (0.5, 0.5, 0), "T": (0, 0.5, 0.5), "U": (0.5, 0, 0.5), "R": (0.5, 0.5, 0.5)}  # fmt: skip
    return np.diag([a, b, c]), pts


def _rhl1(a: float, alpha_deg: float):
    al = np.radians(alpha_deg)
    assert al < np.pi / 2  # RHL1
    ca, ch, sh = np.cos(al), np.cos(al / 2), np.sin(al / 2)
    lat = a * np.array([[ch, -sh, 0], [ch, sh, 0], [ca / ch, 0, np.sqrt(1 - ca**2 / ch**2)]])
    eta = (1 + 4 * ca) / (2 + 4 * ca)
    nu = 3 / 4 - eta / 2
    pts = {"\\Gamma": (0, 0, 0), "B": (eta, 0.5, 1 - eta), "B_1": (0.5, 1 - eta, eta - 1),
           "F": (0.5, 0.5, 0), "L": (0.5, 0, 0), "L_1": (0, 0, -0.5), "P": (eta, nu, nu),
           "P_1": (1 - nu, 1 - nu, 1 - eta), "P_2": (nu, nu, eta - 1), "Q": (1 - nu, nu, 0),
           "X": (nu, 0, -nu), "Z": (0.5, 0.5, 0.5)}  # fmt: skip
    return lat, pts


def _bct2(a: float, c: float):
    assert c > a  # BCT2
    lat = np.array([[-a / 2, a / 2, c / 2], [a / 2, -a / 2, c / 2], [a / 2, a / 2, -c / 2]])
    eta, zeta = (1 + a**2 / c**2) / 4, a**2 / (2 * c**2)
    pts = {"\\Gamma": (0, 0, 0), "N": (0, 0.5, 0), "P": (0.25, 0.25, 0.25),
           "\\Sigma": (-eta, eta, eta), "\\Sigma_1": (eta, 1 - eta, -eta), "X": (0, 0, 0.5),
           "Y": (-zeta, zeta, 0.5), "Y_1": (0.5, 0.5, -zeta), "Z": (0.5, 0.5, -0.5)}  # fmt: skip
    return lat, pts


def _integer_maps(cell: np.ndarray, textbook: np.ndarray) -> np.ndarray:
    """All M (entries -1..1) with cell = M textbook up to a rotation (metric tensors)."""
    g_cell, g_text = cell @ cell.T, textbook @ textbook.T
    ms = np.array(list(itertools.product((-1, 0, 1), repeat=9)), dtype=float).reshape(-1, 3, 3)
    ok = np.abs(np.linalg.det(ms)) > 0.5
    ms = ms[ok]
    err = np.abs(np.einsum("nij,jk,nlk->nil", ms, g_text, ms) - g_cell).max(axis=(1, 2))
    return ms[err < 1e-3 * np.abs(g_cell).max()]


def _labels_at_textbook_points(kpts, labels, cell, textbook, table) -> bool:
    frac = np.asarray(kpts)[:, :3]
    for m in _integer_maps(cell, textbook):
        good = True
        for i, name in labels.items():
            delta = frac[i] - m @ np.asarray(table[name], dtype=float)
            if np.abs(delta - np.rint(delta)).max() > 1e-6:
                good = False
                break
        if good:
            return True
    return False


def _rhombohedral_params(s: Structure) -> tuple[float, float]:
    a, b, c = s.lattice.abc
    assert a == pytest.approx(b) == pytest.approx(c)  # the primitive cell is rhombohedral
    return a, s.lattice.alpha


CASES = {
    "Cs4PbBr6": ("primitive", lambda s: _rhl1(*_rhombohedral_params(s))),
    "CsPbBr3-ortho": ("conventional", lambda s: _orc(*sorted(s.lattice.abc))),
    "Cs2NaBiCl6": ("primitive", lambda s: _fcc(s.lattice.a * np.sqrt(2))),
    "CsPbBr3-cubic": ("conventional", lambda s: _cub(s.lattice.a)),
    # I4/mcm: body-centred tetragonal; a and c of the conventional cell
    "CsPb2Br5": ("primitive", lambda s: _bct2(*build_prototype("CsPb2Br5").lattice.abc[::2])),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_label_at_its_textbook_point(name: str):
    cell_choice, textbook = CASES[name]
    s = build_prototype(name, cell=cell_choice)
    lat, table = textbook(s)
    kpts, labels = band_path(AseAtomsAdaptor.get_atoms(s), protocol="fast")
    assert set(labels.values()) >= set(table) - {"L_1", "P_2"}  # the path visits every point
    assert _labels_at_textbook_points(kpts, labels, s.lattice.matrix, lat, table)
    # a wrong assignment is caught: swapping two labels breaks the match
    swapped = dict(labels)
    first = next(i for i, n in labels.items() if n != "\\Gamma")
    other = next(i for i, n in labels.items() if n not in ("\\Gamma", labels[first]))
    swapped[first], swapped[other] = labels[other], labels[first]
    assert not _labels_at_textbook_points(kpts, swapped, s.lattice.matrix, lat, table)


def test_fast_density_gives_a_plottable_path():
    s = build_prototype("CsPbBr3-cubic")
    kpts, labels = band_path(s, protocol="fast")
    # Γ-X-M-Γ-R-X|M-R: 8 labelled points; every segment has >= 2 interior k-points here
    assert len(labels) == 8 and len(kpts) >= 40
    idx = sorted(labels)
    gaps = [b - a for a, b in itertools.pairwise(idx)]
    assert gaps.count(1) == 1 and all(g >= 3 for g in gaps if g != 1)  # the X|M jump only
    dist, ticks, jumps = path_distances(kpts[:, :3], s.lattice.reciprocal_lattice.matrix, labels)
    # |Γ-X| = π/a (2π included in the reciprocal lattice)
    assert dist[idx[1]] == pytest.approx(np.pi / 5.874, rel=1e-6)
    assert [t[1] for t in ticks].count("$X|M$") == 1 and len(jumps) == 1


def test_rotated_cell_and_folded_defect_supercell():
    host = build_prototype("Cs4PbBr6", cell="primitive")
    rot = Rotation.from_euler("xyz", [20, 35, -50], degrees=True).as_matrix()
    turned = Structure(Lattice(host.lattice.matrix @ rot.T), host.species, host.frac_coords)
    lat, table = _rhl1(*_rhombohedral_params(host))
    kpts, labels = band_path(turned, 10)
    assert _labels_at_textbook_points(kpts, labels, turned.lattice.matrix, lat, table)
    # a 2x1x1 supercell of cubic CsPbBr3 with a Br vacancy, the host's path folded into it
    cub = build_prototype("CsPbBr3-cubic")
    cell = cub.copy()
    cell.make_supercell([2, 1, 1])
    cell.remove_sites([len(cell) - 1])
    lat, table = _cub(cub.lattice.a)
    n = np.diag([2, 1, 1])  # cell = N host, by construction: f_cell = N f_host
    lat, table = n @ lat, {k: n @ np.asarray(v) for k, v in table.items()}
    kpts, labels = band_path(cell, 10, reference=cub)
    assert _labels_at_textbook_points(kpts, labels, cell.lattice.matrix, lat, table)
    assert set(labels.values()) == set(table)
    with pytest.raises(InputError, match="not a supercell"):
        band_path(build_prototype("CsPbBr3-ortho"), 10, reference=cub)


def test_demo_path_is_labelled_and_on_the_lattice():
    host = build_prototype("Cs4PbBr6", cell="primitive")
    kpts, labels = short_band_path(host)
    labels = {int(i): n for i, n in labels.items()}
    lat, table = _rhl1(*_rhombohedral_params(host))
    assert _labels_at_textbook_points(kpts, labels, host.lattice.matrix, lat, table)
    assert len(kpts) >= 10 and all(n in table for n in labels.values())
