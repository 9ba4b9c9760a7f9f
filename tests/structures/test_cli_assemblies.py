"""CLI: perovflow paths / interfaces / nanocrystals / faults."""

from __future__ import annotations

import json

import pytest


def _one_line_error(code: int, err: str, words: str) -> None:
    assert code == 2
    line = err.strip()
    assert "\n" not in line and line.startswith("error:") and "(fix:" in line
    assert words in line


def test_paths_list_cubic(cli):
    code, out, _ = cli(
        "paths", "list", "CsPbBr3-cubic", "--cell", "primitive", "--vacancy", "Br", "--json"
    )
    assert code == 0
    hops = json.loads(out)["hops"]
    assert len(hops) == 1 and hops[0]["multiplicity"] == 8
    assert hops[0]["environment_left"] == "Br from Pb–Br octahedron"


def test_paths_list_seed_hops(cli):
    code, out, _ = cli(
        "paths",
        "list",
        "Cs2NaBiCl6",
        "--supercell",
        "2x1x1",
        "--substitute",
        "Na:Ag:1",
        "--seed",
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert data["natoms"] == 80
    assert [h["environment_left"] for h in data["hops"]] == [
        "Na",
        "Ag",
        "Cl from Na–Cl octahedron",
        "Cl from Ag–Cl octahedron",
    ]


@pytest.mark.parametrize("method", ["linear", "idpp"])
def test_paths_build_writes_images(cli, tmp_path, method):
    out_dir = tmp_path / "neb"
    code, out, err = cli(
        "paths", "build", "CsPbBr3-cubic", "--cell", "primitive", "--supercell", "2x2x2", "--vacancy", "Br",
        "--images", "3", "--method", method, "-o", out_dir, "--json",
    )  # fmt: skip
    assert code == 0, err
    info = json.loads(out)
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == [
        "00.vasp",
        "01.vasp",
        "02.vasp",
        "03.vasp",
        "04.vasp",
        "hop.json",
        "images.extxyz",
    ]
    assert info["min_distance_ratio"] > 0.7
    from ase.io import read

    images = read(out_dir / "images.extxyz", index=":")
    assert len(images) == 5 and all(len(a) == 39 for a in images)  # 40-atom cell minus one Br
    # the same folder again is refused, and the first result is left alone
    code, _, err = cli("paths", "build", "CsPbBr3-cubic", "--vacancy", "Br", "-o", out_dir)
    _one_line_error(code, err, "already exists")
    assert len(list(out_dir.iterdir())) == 7


def test_paths_bad_input(cli):
    code, _, err = cli("paths", "list", "CsPbBr3-cubic", "--vacancy", "Xx")
    _one_line_error(code, err, "unknown element")
    code, _, err = cli("paths", "list", "CsPbBr3-cubic", "--vacancy", "Br", "--cutoff", "1.5")
    _one_line_error(code, err, "no Br ion within 1.5")
    code, _, err = cli("paths", "list", "CsPbBr3-cubic")
    _one_line_error(code, err, "no vacancy element")


def test_interfaces_build_and_write(cli, tmp_path):
    target = tmp_path / "iface.extxyz"
    code, out, err = cli(
        "interfaces", "build", "Pb4S3Br2", "CsPbBr3-cubic", "--film-miller", "0,1,0", "--substrate-miller", "0,0,1",
        "--max-candidates", "2", "--pick", "1", "-o", target, "--json",
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert len(data["candidates"]) == 2
    assert all(c["strain"] <= 0.03 for c in data["candidates"])
    from ase.io import read

    atoms = read(target)
    assert len(atoms) == data["candidates"][1]["natoms"]
    assert set(atoms.arrays["domain"]) == {"Pb4S3Br2", "CsPbBr3"}


def test_interfaces_impossible_strain(cli):
    code, _, err = cli(
        "interfaces", "build", "Pb4S3Br2", "CsPbBr3-cubic", "--film-miller", "0,1,0", "--substrate-miller", "0,0,1",
        "--max-strain", "0.005",
    )  # fmt: skip
    _one_line_error(code, err, "no coherent")


def test_nanocrystals_build(cli, tmp_path):
    target = tmp_path / "cube.xyz"
    code, out, err = cli("nanocrystals", "build", "--edge-nm", "3.2", "-o", target, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (
        data["formula"] == "Cs200Pb125Br450" and data["net_charge"] == 0 and data["natoms"] == 775
    )
    from ase.io import read

    assert len(read(target)) == 775
    het = tmp_path / "het.extxyz"
    code, out, err = cli(
        "nanocrystals",
        "build",
        "--edge",
        "3",
        "--half-sphere",
        "Pb4S3Br2",
        "--radius",
        "8",
        "-o",
        het,
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["net_charge"] == 0 and set(data["domains"]) == {"CsPbBr3", "Pb4S3Br2"}
    assert set(read(het).arrays["domain"]) == {"CsPbBr3", "Pb4S3Br2"}
    code, _, err = cli("nanocrystals", "build", "--edge", "3", "-o", tmp_path / "cube.cif")
    _one_line_error(code, err, "cannot be written")


def test_faults_build(cli, tmp_path):
    target = tmp_path / "rp.extxyz"
    code, out, err = cli(
        "faults", "build", "--layers", "3", "--vacancy", "far", "-o", target, "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["formula"].replace(" ", "") in {"Cs8Pb6Br10I9", "Cs8Pb6I9Br10"}
    assert data["vacancy"]["element"] == "I" and data["vacancy"]["distance_to_fault_A"] > 9.0
    from ase.io import read

    assert len(read(target)) == 33
    code, _, err = cli("faults", "build", "--a", "Cs4PbBr6", "-o", tmp_path / "x.extxyz")
    _one_line_error(code, err, "not a cubic ABX3")
    assert not (tmp_path / "x.extxyz").exists()
