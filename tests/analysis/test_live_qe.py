"""Live run: ld1.x pseudopotentials -> pw.x (Gamma, CsPbBr3) -> projwfc.x -> parser."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from perovflow.analysis.ipr import analyze_ipr
from perovflow.engines.qe.projwfc import parse_projwfc

PW_IN = """&control
  calculation='scf', prefix='pwscf', outdir='./out', pseudo_dir='./pseudo'
/
&system
  ibrav=1, celldm(1)=11.0927, nat=5, ntyp=3, ecutwfc=20, ecutrho=160, nbnd=22,
  occupations='fixed'
/
&electrons
  conv_thr=1e-5
/
ATOMIC_SPECIES
Cs 132.905 Cs.pbe-tm.UPF
Pb 207.2 Pb.pbe-tm.UPF
Br 79.904 Br.pbe-tm.UPF
ATOMIC_POSITIONS crystal
Cs 0.5 0.5 0.5
Pb 0.0 0.0 0.0
Br 0.5 0.0 0.0
Br 0.0 0.5 0.0
Br 0.0 0.0 0.5
K_POINTS gamma
"""
PROJWFC_IN = "&projwfc\n  prefix='pwscf', outdir='./out', filproj='pwscf.proj'\n/\n"


def _run(argv: list[str], cwd: Path, stdin: str, out: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(cwd / out, "w") as fh:
        subprocess.run(argv, cwd=cwd, input=stdin, stdout=fh, stderr=subprocess.STDOUT,
                       text=True, check=True, env=env, timeout=300)  # fmt: skip


@pytest.mark.qe
def test_pw_projwfc_parse_cspbbr3_gamma(tmp_path: Path, qe_data: Path):
    pseudo = tmp_path / "pseudo"
    pseudo.mkdir()
    for el in ("cs", "pb", "br"):
        text = (qe_data / "pseudo_inputs" / f"{el}.in").read_text()
        _run(["ld1.x"], pseudo, text, f"{el}.out")
    _run(["pw.x"], tmp_path, PW_IN, "pw.out")
    _run(["projwfc.x"], tmp_path, PROJWFC_IN, "projwfc.out")
    proj = parse_projwfc(tmp_path)
    assert proj.species == ["Cs", "Pb", "Br", "Br", "Br"]
    assert proj.nstates == 22 and proj.meta["precision"].startswith("filproj")
    assert int(proj.occupations.sum()) == 17  # 34 valence electrons, Gamma only
    res = analyze_ipr(proj)
    vbm = next(s for s in res.states if s["energy_eV"] == res.vbm_eV)
    # at Gamma, symmetry forbids Pb 6s - Br 4p mixing: the top valence states are pure Br 4p
    assert vbm["shares"]["Br"] > 0.9
    assert sum(1 for s in res.states if abs(s["energy_eV"] - res.vbm_eV) < 1e-3) == 3
