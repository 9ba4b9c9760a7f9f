"""projwfc.x parser on real QE 6.7 outputs, and its one-line errors on bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perovflow.engines.qe.projwfc import parse_projwfc, read_filproj
from perovflow.engines.qe.projwfc import read_text as read_gz
from perovflow.errors import InputError


def test_cspbbr3_states_species_and_kweights(qe_data: Path):
    p = parse_projwfc(qe_data / "cspbbr3_scf")
    assert p.species == ["Cs", "Pb", "Br", "Br", "Br"]
    nk, nbnd = p.meta["nkstot"], p.meta["nbnd"]
    assert p.nstates == nk * nbnd == 10 * 24  # 4x4x4 grid -> 10 irreducible k in Pm-3m
    kw = p.kweights[::nbnd]
    assert kw.sum() == pytest.approx(1.0)
    assert kw[0] == pytest.approx(1 / 64)  # Gamma is one point of the 64-point MP grid
    # 34 valence electrons (Cs 9 + Pb 4 + 3 Br x 7): 17 doubly occupied bands per k-point
    occ = p.occupations.reshape(nk, nbnd)
    assert np.all(occ.sum(axis=1) == 17)
    assert p.meta["precision"].startswith("filproj")
    assert p.get_structure().get_space_group_info()[1] == 221


def test_stdout_and_filproj_weights_agree(copy_calc):
    calc = copy_calc("cspbbr3_scf")
    full = parse_projwfc(calc)
    (calc / "pwscf.proj.projwfc_up.gz").unlink()
    rounded = parse_projwfc(calc)
    assert rounded.meta["precision"].startswith("stdout")
    # stdout prints 3 decimals and drops components < 0.001 (a few per atom)
    assert np.abs(full.weights - rounded.weights).max() < 0.02
    assert full.weights.sum(axis=1) == pytest.approx(rounded.weights.sum(axis=1), abs=0.03)


def test_orbital_split_sums_to_atom_weights(qe_data: Path):
    p = parse_projwfc(qe_data / "cs4pbbr6")
    assert p.orbital_weights.sum(axis=2) == pytest.approx(p.weights, abs=1e-5)
    pb = p.species.index("Pb")
    # the Pb wavefunctions in the pseudopotential are 6s and 6p only: no d weight
    assert p.orbital_weights[:, pb, 2].max() == 0.0


def test_filproj_reader_shape(qe_data: Path):
    atom, proj = read_filproj(qe_data / "cspbbr3_scf" / "pwscf.proj.projwfc_up.gz")
    assert proj.shape == (len(atom), 240)
    assert set(atom.tolist()) == {0, 1, 2, 3, 4}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_truncated_output_is_an_error(tmp_path: Path, qe_data: Path):
    text = read_gz(qe_data / "cs4pbbr6" / "projwfc.out.gz")
    bad = _write(tmp_path / "projwfc.out", text[: len(text) // 2])
    with pytest.raises(InputError, match="truncated"):
        parse_projwfc(bad)


def test_run_without_atomic_wavefunctions_is_an_error(tmp_path: Path, qe_data: Path):
    text = read_gz(qe_data / "cs4pbbr6" / "projwfc.out.gz")
    head = text[: text.index("Atomic states used")]
    msg = (
        head
        + "\n     Error in routine do_projwfc (1):\n     Cannot project on zero atomic wavefunctions!\n"
    )
    with pytest.raises(InputError, match="no atomic projections") as err:
        parse_projwfc(_write(tmp_path / "projwfc.out", msg))
    assert "PSWFC" in str(err.value) and "\n" not in str(err.value)


def test_not_a_projwfc_output_and_corrupt_gzip(tmp_path: Path, qe_data: Path):
    with pytest.raises(InputError, match=r"not a projwfc.x output"):
        parse_projwfc(qe_data / "cspbbr3_bands" / "pw.out.gz")
    bad = tmp_path / "projwfc.out.gz"
    bad.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(InputError, match="cannot read"):
        parse_projwfc(bad)
    with pytest.raises(InputError, match=r"no projwfc.x output"):
        parse_projwfc(tmp_path)  # a folder whose only file is unreadable


def test_corrupt_component_index(tmp_path: Path, qe_data: Path):
    text = read_gz(qe_data / "cs4pbbr6" / "projwfc.out.gz")
    bad = text.replace("*[#   1]", "*[#9999]", 1)
    with pytest.raises(InputError, match="corrupt"):
        parse_projwfc(_write(tmp_path / "projwfc.out", bad))


def test_other_column_widths_parse_the_same(copy_calc, tmp_path: Path):
    """Wider fields (as other QE versions print) take the general path, same numbers."""
    import re

    calc = copy_calc("cs4pbbr6")
    (calc / "pwscf.proj.projwfc_up.gz").unlink()  # the weights from the stdout components
    ref = parse_projwfc(calc)
    text = read_gz(calc / "projwfc.out.gz")
    wide = re.sub(r"\*\[#(\s*\d+)\]", r"*[# \1]", text).replace("==== e(", "==== e( ")
    (calc / "projwfc.out.gz").unlink()
    (calc / "projwfc.out").write_text(wide)
    p = parse_projwfc(calc)
    assert np.array_equal(p.energies, ref.energies)
    assert np.array_equal(p.weights, ref.weights)
