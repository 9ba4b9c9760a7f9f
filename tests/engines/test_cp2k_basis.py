"""The CP2K basis of ``fast`` and ``standard``: a preference list over two cp2k-data files.

The names checked below are those Debian's cp2k-data files list for each element (read here
with a plain grep-like scan, not with the code under test): BASIS_MOLOPT_UCL has the
short-range TZVP for Cs, Pb, Br, Ag, Bi (and TZVPd for Na); Cl only has the full-range
TZVP-MOLOPT-GTH of BASIS_MOLOPT.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from perovflow.engines.cp2k.inputs import cp2k_input_set
from perovflow.engines.cp2k.writer import render
from perovflow.engines.pseudos import get_pseudos

DATA = Path("/usr/share/cp2k")


def _listed(element: str) -> set[str]:
    names = set()
    for f in ("BASIS_MOLOPT", "BASIS_MOLOPT_UCL"):
        for line in (DATA / f).read_text(errors="replace").splitlines():
            words = line.split()
            if len(words) > 1 and words[0] == element:
                names.update(words[1:])
    return names


@pytest.mark.skipif(not (DATA / "BASIS_MOLOPT_UCL").is_file(), reason="needs cp2k-data")
@pytest.mark.parametrize("protocol", ["fast", "standard"])
def test_protocol_basis_falls_back_per_element_and_lists_both_files(protocol):
    cell = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(10.84), ["Cs", "Na", "Bi", "Cl"],
        [[0.25] * 3, [0.5] * 3, [0, 0, 0], [0.25, 0, 0]],
    ).get_primitive_structure()  # fmt: skip
    atoms = AseAtomsAdaptor.get_atoms(cell)
    pots = get_pseudos(["Cs", "Na", "Bi", "Cl"], "cp2k")
    params, _, info = cp2k_input_set(
        atoms, "static", protocol, pots, overrides={"kpoints": "gamma"}
    )
    assert info["basis"] == {
        "Bi": "TZVP-MOLOPT-SR-GTH-q5", "Cl": "TZVP-MOLOPT-GTH-q7",
        "Cs": "TZVP-MOLOPT-SR-GTH-q9", "Na": "TZVPd-MOLOPT-SR-GTH-q9",
    }  # fmt: skip
    for el, name in info["basis"].items():
        assert name in _listed(el)
    text = render(params)
    files = [ln.split()[1] for ln in text.splitlines() if ln.strip().startswith("BASIS_SET_FILE")]
    assert [Path(f).name for f in files] == ["BASIS_MOLOPT", "BASIS_MOLOPT_UCL"]
    # a user's basis (one name) still wins over the list
    _, _, user = cp2k_input_set(atoms, "static", protocol, pots,
                                overrides={"kpoints": "gamma", "basis": "DZVP-MOLOPT-SR-GTH"})  # fmt: skip
    assert user["basis"]["Cs"] == "DZVP-MOLOPT-SR-GTH-q9"
