"""Hybrid functionals in QE: the xc switch, cost controls and their precedence, checks, pw.x runs."""

from __future__ import annotations

import fr_family  # helper next to this file (pytest puts this folder on sys.path)
import numpy as np
import pytest
from ase import Atoms

from perovflow.engines.pseudos import Pseudo
from perovflow.engines.qe.hybrid import fock_grid, hybrid_settings, pseudo_type
from perovflow.engines.qe.inputs import qe_input_set
from perovflow.engines.qe.jobs import QEBandsMaker, QEStaticMaker, run_qe_task
from perovflow.errors import InputError

RY_EV = 13.605693122994


def _atoms(a: float = 5.87) -> Atoms:
    frac = [(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
    return Atoms("CsPbBr3", scaled_positions=frac, cell=np.eye(3) * a, pbc=True)


def _pseudos(path: str = "x.gth") -> dict:
    return {el: Pseudo(el, f"{el}.upf", path, "", "x", q) for el, q in
            {"Cs": 9, "Pb": 4, "Br": 7}.items()}  # fmt: skip


def _system(**kw) -> dict:
    over = kw.pop("overrides", {})
    params = qe_input_set(_atoms(kw.pop("a", 5.87)), kw.pop("calc", "static"), "fast",
                          kw.pop("pseudos", _pseudos()), overrides=over, **kw)  # fmt: skip
    return params["input_data"]["system"]


def test_xc_precedence_protocol_maker_user():
    assert "input_dft" not in _system()  # protocol fast: xc pbe
    hse = _system(xc="hse06", overrides={"kpts": [2, 2, 2]})
    # HSE06 is pw.x's 'hse'; 5.87 Å < 9 Å: the Fock grid is the whole 2x2x2 k grid (R included)
    assert hse["input_dft"] == "hse" and [hse[f"nqx{i}"] for i in (1, 2, 3)] == [2, 2, 2]
    assert _system(xc="pbe0")["input_dft"] == "pbe0"
    user = _system(xc="hse06", overrides={"input_dft": "pbe0"})
    assert user["input_dft"] == "pbe0"  # user input_dft > maker xc
    semilocal = _system(xc="hse06", overrides={"input_dft": "pbe"})  # user: no Fock exchange
    assert semilocal["input_dft"] == "pbe" and "nqx1" not in semilocal
    with pytest.raises(InputError, match="unknown xc 'b3lypp'"):
        _system(xc="b3lypp")


def test_cost_controls_automatic_maker_user():
    # automatic: Γ-only exchange along vectors >= 9 Å (cell 10 x 10 x 5.87 Å, k 2x2x4)
    cell = np.diag([10.0, 10.0, 5.87])
    assert fock_grid(cell, [2, 2, 4]) == [1, 1, 4]
    big = _system(xc="hse06", a=10.0, overrides={"kpts": [2, 2, 2]})
    assert [big[f"nqx{i}"] for i in (1, 2, 3)] == [1, 1, 1]
    # maker nqx and ecutfock (340.14 eV = 25 Ry) replace the automatic choice ...
    maker = _system(xc="hse06", hybrid={"nqx": 1, "ecutfock_eV": 25 * RY_EV},
                    overrides={"kpts": [2, 2, 2], "ecutwfc": 25, "ecutrho": 100})  # fmt: skip
    assert maker["nqx1"] == 1 and maker["ecutfock"] == pytest.approx(25.0)
    # the protocol's qe block sits between the automatic choice and the maker fields
    proto = {"nqx": 1, "ecutfock_eV": 50 * RY_EV}
    from_proto = hybrid_settings("hse06", proto, np.eye(3) * 5.87, [2, 2, 2], {})
    assert from_proto["nqx3"] == 1 and from_proto["ecutfock"] == pytest.approx(50.0)
    assert hybrid_settings("hse06", proto, np.eye(3) * 5.87, [2, 2, 2], {"nqx": 2})["nqx1"] == 2
    # ... and the user's pw.x keys win over all
    user = _system(xc="hse06", hybrid={"nqx": 1},
                   overrides={"kpts": [2, 2, 2], "nqx1": 2, "ecutfock": 50, "ecutrho": 100})  # fmt: skip
    assert user["nqx1"] == 2 and user["nqx2"] == 1 and user["ecutfock"] == 50


def test_hybrid_with_soc_input_set():
    system = _system(xc="hse06", soc=True)
    assert system["noncolin"] and system["lspinorb"] and system["input_dft"] == "hse"
    assert system["nbnd"] == 49  # 34 electrons, one per spinor band: ceil(34*1.2)+8


def test_unsupported_combinations_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="outside"):  # pw.x: ecutfock > ecutrho refused
        _system(xc="hse06", overrides={"ecutwfc": 25, "ecutrho": 100, "ecutfock": 120})
    with pytest.raises(InputError, match="does not divide"):
        _system(xc="hse06", overrides={"kpts": [3, 3, 3], "nqx1": 2})
    with pytest.raises(InputError, match="non-self-consistent DOS"):
        _system(xc="hse06", calc="dos")
    us = tmp_path / "Pb.us.upf"
    us.write_text('<UPF version="2.0.1">\n<PP_HEADER pseudo_type="US" z_valence="14"/>\n')
    assert pseudo_type(us) == "US" and pseudo_type(tmp_path / "Pb.x.gth") == "NC"
    with pytest.raises(InputError, match="US/PAW"):
        _system(xc="hse06", soc=True, pseudos=_pseudos(str(us)))
    assert _system(xc="hse06", pseudos=_pseudos(str(us)))["input_dft"] == "hse"  # collinear ok


TINY = {"ecutwfc": 25, "ecutrho": 100, "kpts": [2, 2, 2], "conv_thr": 1e-6, "nbnd": 20}


@pytest.mark.qe
@pytest.mark.slow
def test_hse06_opens_the_cspbbr3_gap_and_restarts_from_pbe(tmp_path):
    atoms = _atoms()
    pbe = run_qe_task(QEStaticMaker(input_set_overrides=TINY), atoms, None, tmp_path / "pbe")
    # Fock grid 2x2x2 = the k grid: it contains R (the band edges of cubic CsPbBr3)
    hse = run_qe_task(
        QEStaticMaker(xc="hse06", ecutfock_eV=25 * RY_EV, input_set_overrides=TINY),
        atoms, pbe.dir_name, tmp_path / "hse",
    )  # fmt: skip
    # published: PBE 1.3-1.5 eV, HSE06 1.9-2.2 eV (no SOC), so HSE opens it by 0.3-1.0 eV
    opening = hse.electronic.band_gap_eV - pbe.electronic.band_gap_eV
    assert 0.3 < opening < 1.0, (pbe.electronic.band_gap_eV, hse.electronic.band_gap_eV)
    out = (tmp_path / "hse" / "espresso.pwo").read_text()
    # pw.x's own words: it read the PBE density and wavefunctions, and ran EXX to the end
    assert "The initial density is read from file" in out
    assert "Starting wfcs from file" in out and "EXX self-consistency reached" in out
    assert "EXX-fraction              =        0.25" in out  # HSE06: 25 % exact exchange
    # the bands step of a hybrid is an scf on the grid (pw.x 6.7 refuses non-scf hybrids)
    bands = run_qe_task(
        QEBandsMaker(xc="hse06", ecutfock_eV=25 * RY_EV, input_set_overrides=TINY),
        atoms, hse.dir_name, tmp_path / "bands",
    )  # fmt: skip
    assert bands.input_parameters["input_data"]["control"]["calculation"] == "scf"
    assert bands.electronic.band_gap_eV == pytest.approx(hse.electronic.band_gap_eV, abs=0.02)


def test_cli_xc_typo_is_one_line_error(cli):
    code, _, err = cli("calc", "scf", "CsPbBr3-cubic", "--xc", "hse07")
    assert code == 2 and err.startswith("error: unknown xc 'hse07'")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.qe
@pytest.mark.slow
def test_hse06_with_soc_runs_noncollinear_from_the_pbe_soc_start(tmp_path):
    fr_family.install(fr_family.build(tmp_path / "fr", ("Cs", "Pb", "Br")))
    gamma = {"ecutwfc": 20, "ecutrho": 80, "kpts": [1, 1, 1], "conv_thr": 1e-6}
    atoms = _atoms()
    pbe = run_qe_task(QEStaticMaker(soc=True, input_set_overrides=gamma), atoms, None,
                      tmp_path / "pbe")  # fmt: skip
    hse = run_qe_task(QEStaticMaker(soc=True, xc="hse06", ecutfock_eV=20 * RY_EV,
                                    input_set_overrides=gamma), atoms, pbe.dir_name,
                      tmp_path / "hse")  # fmt: skip
    out = (tmp_path / "hse" / "espresso.pwo").read_text()
    assert "spin-orbit" in out and "EXX self-consistency reached" in out
    assert "Starting wfcs from file" in out  # the spinor PBE+SOC wavefunctions were read
    # exact exchange opens the (Γ-point) gap; ld1-fr-pbe valences Cs 9 + Pb 14 (5d in
    # valence) + 3 Br 7 = 44 electrons, one per spinor band; the hybrid keeps the PBE
    # run's band count so that its wavefunctions can be read
    assert hse.electronic.band_gap_eV - pbe.electronic.band_gap_eV > 0.3
    assert hse.electronic.nelect == 9 + 14 + 3 * 7
    assert hse.electronic.nbands == pbe.electronic.nbands


def test_wavefunction_restart_user_and_maker_switches(tmp_path):
    from perovflow.engines.qe.restart import _wavefunction_actions

    src = tmp_path / "pbe" / "pwscf.save"
    src.mkdir(parents=True)
    (src / "wfc1.dat").write_bytes(b"x")
    dst = tmp_path / "hse" / "pwscf.save"
    hybrid = {"input_data": {"system": {"input_dft": "hse"}, "electrons": {}}}
    acts = _wavefunction_actions(src, dst, hybrid)
    assert acts[0]["file"].endswith("wfc1.dat")
    assert acts[-1]["action"] == {"_set": {"input_data->electrons->startingwfc": "file"}}
    assert _wavefunction_actions(src, dst, {**hybrid, "_exx_restart": False}) == []
    mine = {"input_data": {"system": {"input_dft": "hse"}, "electrons": {"startingwfc": "random"}}}
    assert all("dict" not in a for a in _wavefunction_actions(src, dst, mine))  # user wins
    semilocal = {"input_data": {"system": {}, "electrons": {}}}
    assert _wavefunction_actions(src, dst, semilocal) == []  # PBE restarts keep the density only
