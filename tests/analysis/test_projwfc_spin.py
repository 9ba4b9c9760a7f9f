"""Spin-polarised, non-collinear and spin–orbit projwfc.x runs, parsed with what QE writes.

Two Br atoms in a simple cubic cell (a = 9 bohr, Br at 0 and the body centre), 20 Ry, 2x2x2
unshifted k grid, Gaussian smearing; pseudopotentials made by ld1.x from
``pseudo_inputs/br.in`` (scalar relativistic) and ``pseudo_inputs/br_rel.in`` (fully
relativistic, for spin–orbit). Each pw.x + projwfc.x run takes one to three seconds.

The independent facts: the k weights of the irreducible 2x2x2 grid (Γ 1, X 3, M 3, R 1 of
the 8 points), 7 valence electrons per Br, pw.x's printed total magnetization, and the
Löwdin charges projwfc.x prints itself (sum over states of k weight x occupation x
projection, computed by projwfc.x from its own arrays).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from perovflow.engines.qe.projwfc import parse_projwfc

pytestmark = pytest.mark.qe

PW_IN = """&control
  calculation='scf', prefix='br2', outdir='./out', pseudo_dir='{pseudo}'
/
&system
  ibrav=1, celldm(1)=9.0, nat=2, ntyp=1, ecutwfc=20, nbnd={nbnd},
  occupations='smearing', smearing='gaussian', degauss=0.01, {spin}
/
&electrons
  conv_thr=1e-7
/
ATOMIC_SPECIES
Br 79.904 {upf}
ATOMIC_POSITIONS crystal
Br 0.0 0.0 0.0
Br 0.5 0.5 0.5
K_POINTS automatic
2 2 2 0 0 0
"""
PROJWFC_IN = "&projwfc\n  prefix='br2', outdir='./out', filproj='br2.proj'\n/\n"
RUNS = {
    "lsda": ("Br.pbe-tm.UPF", 12, "nspin=2, starting_magnetization(1)=0.5"),
    "noncollinear": (
        "Br.pbe-tm.UPF",
        20,
        "noncolin=.true., starting_magnetization(1)=0.5, angle1(1)=90, angle2(1)=0",
    ),
    "spinorbit": ("Br.rel-pbe-tm.UPF", 20, "noncolin=.true., lspinorb=.true."),
}


def _run(argv: list[str], cwd: Path, stdin: str, out: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(cwd / out, "w") as fh:
        subprocess.run(argv, cwd=cwd, input=stdin, stdout=fh, stderr=subprocess.STDOUT,
                       text=True, check=True, env=env, timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three pw.x + projwfc.x runs (made once for the module)."""
    root = tmp_path_factory.mktemp("br2")
    pseudo = root / "pseudo"
    pseudo.mkdir()
    inputs = Path(__file__).parents[1] / "data" / "analysis" / "qe" / "pseudo_inputs"
    for name in ("br", "br_rel"):
        _run(["ld1.x"], pseudo, (inputs / f"{name}.in").read_text(), f"{name}.out")
    out = {}
    for name, (upf, nbnd, spin) in RUNS.items():
        calc = root / name
        calc.mkdir()
        pw_in = PW_IN.format(pseudo=pseudo, nbnd=nbnd, spin=spin, upf=upf)
        _run(["pw.x"], calc, pw_in, "pw.out")
        _run(["projwfc.x"], calc, PROJWFC_IN, "projwfc.out")
        out[name] = calc
    return out


def _xml_only(calc: Path, tmp_path: Path) -> Path:
    """A copy of the run without the pw.x standard output."""
    dst = tmp_path / calc.name
    shutil.copytree(calc, dst)
    (dst / "pw.out").unlink()
    return dst


def _lowdin(calc: Path, what: str) -> list[float]:
    """projwfc.x's printed Löwdin charge per atom (``total charge`` or ``spin up``...)."""
    text = (calc / "projwfc.out").read_text()
    return [float(x) for x in re.findall(rf"{what}\s*=\s*(\S+), s =", text)]


def _charges(p, channel: int | None = None) -> np.ndarray:
    """Sum over states of k weight x occupation x projection, per atom."""
    mask = np.ones(p.nstates, bool) if channel is None else p.spins == channel
    return (p.kweights[mask] * p.occupations[mask]) @ p.weights[mask].astype(float)


def test_lsda_from_the_xml_alone(runs, tmp_path: Path):
    calc = _xml_only(runs["lsda"], tmp_path)
    p = parse_projwfc(calc)
    nbnd = p.meta["nbnd"]
    assert p.meta["run_info"] == "xml" and p.meta["nspin"] == 2 and not p.meta["noncolin"]
    assert set(p.spins.tolist()) == {0, 1} and (p.spins == 1).sum() == p.nstates // 2
    for s in (0, 1):
        kw = p.kweights[p.spins == s][::nbnd]
        assert kw.sum() == pytest.approx(1.0)
        # irreducible 2x2x2 grid of a cubic cell: Γ, X, M, R carry 1, 3, 3, 1 of 8 points
        assert sorted(kw) == pytest.approx([1 / 8, 1 / 8, 3 / 8, 3 / 8])
        assert sorted(set(p.kindex[p.spins == s].tolist())) == [0, 1, 2, 3]
    assert p.occupations.min() >= 0 and p.occupations.max() <= 1
    up = (p.kweights * p.occupations)[p.spins == 0].sum()
    down = (p.kweights * p.occupations)[p.spins == 1].sum()
    assert up + down == pytest.approx(14.0, abs=1e-6)  # 2 Br x 7 valence electrons
    text = (runs["lsda"] / "pw.out").read_text()
    magnetization = float(re.findall(r"total magnetization\s*=\s*(\S+)", text)[-1])
    assert up - down == pytest.approx(magnetization, abs=0.01)
    assert _charges(p, 0) == pytest.approx(_lowdin(calc, "spin up"), abs=2e-4)
    assert _charges(p, 1) == pytest.approx(_lowdin(calc, "spin down"), abs=2e-4)
    assert p.fermi_eV is not None and p.get_structure().formula == "Br2"


def test_lsda_stdout_alone_gives_the_same_layout(runs, tmp_path: Path):
    xml = parse_projwfc(runs["lsda"])
    calc = tmp_path / "stdout_only"
    shutil.copytree(runs["lsda"], calc)
    shutil.rmtree(calc / "out")
    p = parse_projwfc(calc)
    assert p.meta["run_info"] == "stdout"
    assert np.array_equal(p.spins, xml.spins) and np.array_equal(p.kindex, xml.kindex)
    assert p.kweights == pytest.approx(xml.kweights)
    # the printed Fermi level gives 0/1 steps; the data file has the smeared occupations
    sure = (xml.occupations < 1e-3) | (xml.occupations > 1 - 1e-3)
    assert p.occupations[sure] == pytest.approx(np.round(xml.occupations[sure]))
    assert set(p.occupations[~sure].tolist()) <= {0.0, 1.0} and 0 < (~sure).sum() < 10


def test_noncollinear_states_hold_one_electron(runs, tmp_path: Path):
    calc = _xml_only(runs["noncollinear"], tmp_path)
    p = parse_projwfc(calc)
    assert p.meta["nspin"] == 4 and p.meta["noncolin"] and not p.meta["lspinorb"]
    assert p.meta["basis"] == "l, m, s_z" and set(p.spins.tolist()) == {0}
    assert p.kweights[:: p.meta["nbnd"]].sum() == pytest.approx(1.0)
    assert (p.kweights * p.occupations).sum() == pytest.approx(14.0, abs=1e-6)
    assert _charges(p) == pytest.approx(_lowdin(calc, "total charge"), abs=2e-4)


def test_spin_orbit_j_states(runs, tmp_path: Path):
    calc = _xml_only(runs["spinorbit"], tmp_path)
    p = parse_projwfc(calc)
    assert p.meta["lspinorb"] and p.meta["noncolin"] and p.meta["basis"] == "l, j, m_j"
    assert (p.kweights * p.occupations).sum() == pytest.approx(14.0, abs=1e-6)
    # Löwdin charges printed per l for spin–orbit runs: s line, then p line, per atom
    text = (calc / "projwfc.out").read_text()
    total = [float(x) for x in re.findall(r"total charge =\s*(\S+), s =", text)]
    assert _charges(p) == pytest.approx(total, abs=2e-4)
    s_and_p = p.orbital_weights[:, 0, :2].astype(float).T @ (p.kweights * p.occupations)
    assert s_and_p == pytest.approx(
        [
            float(x)
            for x in re.findall(r"Atom #   1: total charge =\s*\S+, [sp] =\s*([\d.]+)", text)
        ],
        abs=2e-4,
    )


def test_a_data_file_of_another_run_is_a_one_line_error(runs):
    from perovflow.errors import InputError

    other = runs["noncollinear"] / "out" / "br2.save" / "data-file-schema.xml"
    with pytest.raises(InputError, match="does not belong to the run") as err:
        parse_projwfc(runs["lsda"], pw_output=other)
    assert "\n" not in str(err.value)


def test_analyze_pdos_and_ipr_run_on_the_xml_only_lsda_folder(runs, cli, tmp_path: Path):
    import json

    calc = _xml_only(runs["lsda"], tmp_path)
    code, out, err = cli("analyze", "pdos", calc, "--json")
    assert code == 0, err
    pdos = json.loads(out)
    assert pdos["vbm_eV"] is not None  # occupations known: the VBM is the reference
    code, out, err = cli("analyze", "ipr", calc, "--json")
    assert code == 0, err
    assert {s["spin"] for s in json.loads(out)["states"]} == {0, 1}


def test_gzipped_outputs_and_data_file_parse_the_same(runs, tmp_path: Path):
    import gzip

    ref = parse_projwfc(runs["lsda"])
    calc = _xml_only(runs["lsda"], tmp_path)
    for path in (calc / "projwfc.out", calc / "out" / "br2.save" / "data-file-schema.xml"):
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    p = parse_projwfc(calc)
    assert p.meta["run_info"] == "xml" and p.meta["pw_output"].endswith(".xml.gz")
    assert np.array_equal(p.occupations, ref.occupations) and np.array_equal(p.spins, ref.spins)
