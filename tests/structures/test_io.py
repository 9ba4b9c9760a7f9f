"""Reading, writing and checking structures (round trips through ASE and pymatgen)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.io import read as ase_read
from pymatgen.core import Lattice, Structure

from perovflow.errors import InputError
from perovflow.structures.io import (
    check_structure,
    from_atoms,
    load_structure,
    to_atoms,
    write_structure,
)
from perovflow.structures.prototypes import build_prototype, prototype_names


def _same_lattice(a, b):
    # compare cell metrics (orientation may differ between writers)
    np.testing.assert_allclose(sorted(a.lattice.abc), sorted(b.lattice.abc), atol=1e-4)
    assert a.volume == pytest.approx(b.volume, rel=1e-5)


@pytest.mark.parametrize("name", prototype_names())
@pytest.mark.parametrize("filename", ["s.cif", "s.extxyz", "POSCAR"])
def test_round_trip_with_ase_and_pymatgen(tmp_path, name, filename):
    structure = build_prototype(name)
    path = write_structure(structure, tmp_path / filename)
    # pymatgen reads CIF/POSCAR natively; extxyz only exists in ASE (pymatgen's XYZ has no cell)
    via_pymatgen = (
        Structure.from_file(path) if filename != "s.extxyz" else from_atoms(ase_read(path))
    )
    via_ase = from_atoms(ase_read(path))
    via_loader = load_structure(path)
    for other in (via_pymatgen, via_ase, via_loader):
        assert other.composition == structure.composition
        _same_lattice(other, structure)
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temp files


def test_atoms_conversion_round_trip():
    s = build_prototype("Cs2AgBiCl6")
    back = from_atoms(to_atoms(s))
    assert back.composition == s.composition
    np.testing.assert_allclose(back.cart_coords, s.cart_coords, atol=1e-8)


def test_primitive_from_file(tmp_path):
    path = write_structure(build_prototype("Cs2NaBiCl6"), tmp_path / "c.cif")
    assert len(load_structure(path, cell="primitive")) == 10


def test_malformed_cif(tmp_path):
    bad = tmp_path / "bad.cif"
    bad.write_text("data_x\n_cell_length_a 5.0\nloop_\n_atom_site_label\n")
    with pytest.raises(InputError) as err:
        load_structure(bad)
    assert "bad.cif" in err.value.problem and err.value.fix


def test_missing_file_and_unknown_name():
    with pytest.raises(InputError, match="not found"):
        load_structure("nothere/x.cif")
    with pytest.raises(InputError, match="unknown prototype"):
        load_structure("NotAPerovskite")


def test_overlapping_atoms_named():
    s = Structure(
        Lattice.cubic(6.0), ["Cs", "Pb", "Br"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.52, 0.5, 0.5]]
    )
    with pytest.raises(InputError) as err:
        check_structure(s)
    msg = err.value.problem
    assert "Pb" in msg and "Br" in msg and "0.12 Å" in msg


def test_cell_too_small_for_its_atoms_is_caught():
    # a single atom in a 1 Å cube overlaps with its own periodic images
    with pytest.raises(InputError):
        check_structure(Structure(Lattice.cubic(1.0), ["Pb"], [[0, 0, 0]]))


def test_unknown_output_suffix_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match="suffix"):
        write_structure(build_prototype("CsBr"), out / "x.docx")
    assert not out.exists() or list(out.iterdir()) == []
