"""perovflow structures / defects commands: JSON output and one-line errors."""

from __future__ import annotations

import json

import pytest
from ase.io import read as ase_read


def test_list_json(cli):
    code, out, _ = cli("structures", "list", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["Cs4PbBr6"]["spacegroup"] == "R-3c" and rows["Cs4PbBr6"]["number"] == 167


def test_build_substituted_supercell(cli, tmp_path):
    out_file = tmp_path / "ag.cif"
    code, out, err = cli("structures", "build", "Cs2NaBiCl6", "--supercell", "2x1x1",
                         "--substitute", "Na:Ag:1", "-o", out_file, "--json")  # fmt: skip
    assert code == 0, err
    info = json.loads(out)
    assert info["formula"] == "Cs16Na7Ag1Bi8Cl48" and info["natoms"] == 80
    assert info["n_distinct"] == 1
    assert info["lattice"]["a"] == pytest.approx(21.68, abs=0.01)
    assert info["spacegroup"]["number"] == 123  # one Ag in the doubled cell: P4/mmm
    assert len(ase_read(info["file"])) == 80


def test_build_min_length(cli):
    code, out, _ = cli("structures", "build", "CsPbBr3-cubic", "--min-length", "12", "--json")
    info = json.loads(out)
    assert code == 0 and info["image_distance"] >= 12


def test_build_primitive_human(cli):
    code, out, _ = cli("structures", "build", "Cs4PbBr6", "--cell", "primitive")
    assert code == 0 and "22 atoms" in out and "R-3c (167)" in out


def test_defects_list_and_build(cli, tmp_path):
    code, out, _ = cli("defects", "list", "Cs4PbBr6", "--vacancy", "Br", "--json")
    assert code == 0
    sites = json.loads(out)["sites"]
    assert len(sites) == 1 and sites[0]["multiplicity"] == 36
    target = tmp_path / "vbr.vasp"
    code, out, err = cli("defects", "build", "Cs4PbBr6", "--cell", "primitive", "--vacancy", "Br",
                         "--charge", "1", "-o", target, "--json")  # fmt: skip
    assert code == 0, err
    info = json.loads(out)
    assert info["natoms"] == 21 and info["charge"] == 1 and info["defect"] == "V_Br"
    assert len(ase_read(target)) == 21


def test_help_for_every_command(cli):
    for args in (
        ["structures", "list"],
        ["structures", "build"],
        ["defects", "list"],
        ["defects", "build"],
    ):
        code, out, _ = cli(*args, "--help")
        assert code == 0 and "--json" in out


def _bad_cif(tmp_path):
    path = tmp_path / "broken.cif"
    path.write_text("data_broken\n_cell_length_a five\nloop_\n_atom_site_fract_x\n")
    return path


def _overlap_cif(tmp_path):
    path = tmp_path / "overlap.cif"
    path.write_text(
        "data_x\n_cell_length_a 6\n_cell_length_b 6\n_cell_length_c 6\n"
        "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
        "_symmetry_space_group_name_H-M 'P 1'\nloop_\n_atom_site_label\n_atom_site_type_symbol\n"
        "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
        "Pb1 Pb 0 0 0\nBr1 Br 0.05 0 0\n"
    )
    return path


BAD = {
    "unknown prototype": lambda p: ["structures", "build", "CsPbCl9"],
    "malformed cif": lambda p: ["structures", "build", str(_bad_cif(p))],
    "overlapping atoms": lambda p: ["structures", "build", str(_overlap_cif(p))],
    "element absent": lambda p: ["structures", "build", "Cs2NaBiCl6", "--substitute", "K:Ag:1"],
    "count > sites": lambda p: ["structures", "build", "Cs2NaBiCl6", "--substitute", "Na:Ag:5"],
    "impossible supercell": lambda p: ["structures", "build", "CsBr", "--supercell", "2x0x1"],
    "impossible length": lambda p: ["structures", "build", "CsBr", "--min-length", "200"],
    "vacancy absent": lambda p: ["defects", "build", "CsBr", "--vacancy", "I"],
    "impossible charge": lambda p: ["defects", "build", "CsBr", "--vacancy", "Br", "--charge", "4"],
    "site out of range": lambda p: ["defects", "build", "CsBr", "--vacancy", "Br", "--site", "3"],
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_writes_nothing(cli, tmp_path, case):
    out_file = tmp_path / "out" / "result.cif"
    args = BAD[case](tmp_path)
    code, out, err = cli(*args, "-o", out_file)
    assert code == 2, (case, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "fix:" in lines[0], err
    assert "Traceback" not in err
    assert not out_file.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
