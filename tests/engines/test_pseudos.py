"""Pseudopotential selection and conversion (GTH-PBE from cp2k-data, user UPF folders)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from perovflow.engines import pseudos as P  # noqa: N812
from perovflow.errors import EngineError


@pytest.mark.cp2k_data
def test_choice_follows_molopt_basis_valence():
    # Facts of cp2k-data: DZVP-MOLOPT-SR-GTH exists for Pb q4 (not q14), Cs q9, Br q7, Ag q11.
    expected = {"Pb": 4, "Cs": 9, "Br": 7, "Ag": 11, "Bi": 5, "H": 1}
    for el, q in expected.items():
        pot = P.choose_gth(el)
        assert pot.name == f"GTH-PBE-q{q}"
        assert pot.valence == q  # electrons per l in the file add up to the q of the name


@pytest.mark.cp2k_data
def test_hgh_text_has_abinit_layout():
    pot = P.choose_gth("Pb")
    lines = P.to_abinit_hgh(pot, 82).splitlines()
    z, zion = lines[1].split()[:2]
    assert (int(z), int(zion)) == (82, 4)
    pspcod, pspxc, lmax = (int(t) for t in lines[2].split()[:3])
    assert (pspcod, pspxc) == (10, 11)  # HGH with PBE, what QE's readgth accepts
    assert lmax == len(pot.projectors) - 1
    assert float(lines[3].split()[0]) == pytest.approx(pot.rloc)


@pytest.mark.cp2k_data
def test_upf_tabulation_obeys_gth_physics():
    from perovflow.engines.qe.upf import local_potential, log_mesh, projector

    pot = P.choose_gth("Cs")  # s, p, d and f channels
    r, rab = log_mesh(55)
    vloc = local_potential(pot, r)
    far = r > 15
    np.testing.assert_allclose(vloc[far] * r[far], -pot.valence, rtol=1e-6)  # -Z/r tail
    for ll, (r_l, h) in enumerate(pot.projectors):
        for i in range(len(h)):
            p = projector(r, r_l, ll, i + 1)
            assert math.isclose(np.sum(p**2 * r**2 * rab), 1.0, rel_tol=1e-4)


def _upf(folder: Path, name: str) -> None:
    (folder / name).write_text('<UPF version="2.0.1">\n<PP_HEADER z_valence="7.0"/>\n</UPF>\n')


def test_user_folder_matches_element_prefix_case_insensitively(tmp_path, monkeypatch):
    for name in ("cs_pbe_v1.UPF", "Pb.pbe-dn-kjpaw.upf", "Cl.pbe.upf", "Br-sssp.UPF"):
        _upf(tmp_path, name)
    monkeypatch.setenv("PEROVFLOW_QE__PSEUDO_DIR", str(tmp_path))
    found = P.get_pseudos(["Cs", "Pb", "Br", "Br"], "qe")
    assert {el: p.name for el, p in found.items()} == {
        "Br": "Br-sssp.UPF",
        "Cs": "cs_pbe_v1.UPF",
        "Pb": "Pb.pbe-dn-kjpaw.upf",
    }
    assert found["Cs"].family == tmp_path.name
    assert re.fullmatch(r"[0-9a-f]{32}", found["Cs"].md5)
    with pytest.raises(EngineError) as err:
        P.get_pseudos(["C"], "qe")  # Cl.pbe.upf must not count as carbon
    assert "C" in err.value.problem and str(tmp_path) in err.value.problem


def test_missing_element_is_one_line_error_naming_it():
    with pytest.raises(EngineError) as err:
        P.get_pseudos(["Xx"], "qe")
    assert "'Xx'" in err.value.problem and "\n" not in err.value.one_line()


@pytest.mark.cp2k_data
@pytest.mark.cp2k
def test_conversion_is_cached_atomic_and_recorded(isolated_settings):
    first = P.get_pseudos(["Cs", "Br"], "qe")
    path = first["Cs"].path
    assert path.suffix == ".upf" and path.parent.name == "gth-pbe"
    assert "<PP_PSWFC>" in path.read_text()  # atomic wavefunctions for projwfc.x
    mtime = path.stat().st_mtime
    again = P.get_pseudos(["Cs"], "qe")
    assert again["Cs"].md5 == first["Cs"].md5 and path.stat().st_mtime == mtime
    assert not list(path.parent.glob(".*"))  # no temporary files left behind
    cp2k = P.get_pseudos(["Cs"], "cp2k")["Cs"]
    assert cp2k.name == "GTH-PBE-q9" and cp2k.path.name == "GTH_POTENTIALS"


@pytest.mark.cp2k_data
@pytest.mark.qe
@pytest.mark.cp2k
def test_upf_and_analytic_gth_give_the_same_energy(tmp_path):
    """Two representations of one potential: pw.x analytic (.gth) vs tabulated UPF.

    Pb q4 has s (3 projectors), p (2) and d channels, Br q7 s and p. (Cs is left out: QE 6.7's
    analytic reader drops f projectors, see ``to_abinit_hgh``.)
    """
    from ase import Atoms
    from ase.io import write

    from perovflow.engines.process import run_command

    ups = P.get_pseudos(["Pb", "Br"], "qe")
    gth_dir = tmp_path / "gth"
    gth_dir.mkdir()
    for el in ("Pb", "Br"):
        pot = P.choose_gth(el)
        (gth_dir / f"{el}.gth").write_text(P.to_abinit_hgh(pot, {"Pb": 82, "Br": 35}[el]))
    atoms = Atoms("PbBr", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=[4.3] * 3, pbc=True)
    energies = {}
    for kind, pdir, names in (
        ("upf", ups["Pb"].path.parent, {el: p.name for el, p in ups.items()}),
        ("gth", gth_dir, {"Pb": "Pb.gth", "Br": "Br.gth"}),
    ):
        d = tmp_path / kind
        d.mkdir(exist_ok=True)
        write(d / "pw.in", atoms, format="espresso-in", pseudopotentials=names, kpts=(2, 2, 2),
              input_data={"control": {"pseudo_dir": str(pdir)}, "system": {"ecutwfc": 20, "occupations": "smearing", "degauss": 0.02}})  # fmt: skip
        res = run_command(["pw.x", "-in", "pw.in"], d, "pw.out", None)
        text = (d / "pw.out").read_text()
        assert res.returncode == 0, text[-2000:]
        energies[kind] = float(re.search(r"!\s+total energy\s+=\s+(\S+)", text).group(1))
    assert abs(energies["upf"] - energies["gth"]) < 1e-5  # Ry, for the whole cell
