"""Physics checks on real QE runs: Br vacancy state in Cs4PbBr6, CsPbBr3 edges and bands."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from perovflow.analysis.bands import analyze_bands, plot_bands
from perovflow.analysis.groups import shell_groups
from perovflow.analysis.ipr import analyze_ipr
from perovflow.analysis.pdos import compute_pdos
from perovflow.engines.qe.projwfc import parse_projwfc
from perovflow.engines.qe.projwfc import read_text as read_gz


def _edges(result) -> list[dict]:
    return [s for s in result.states if s["energy_eV"] in (result.vbm_eV, result.cbm_eV)]


def test_vacancy_state_is_localized_on_the_adjacent_pb(qe_data: Path):
    bulk = analyze_ipr(parse_projwfc(qe_data / "cs4pbbr6"))
    proj = parse_projwfc(qe_data / "cs4pbbr6_vbr")
    vac = analyze_ipr(proj)
    bulk_gap = bulk.cbm_eV - bulk.vbm_eV
    # V_Br+: the lowest empty state of the defect cell lies inside the bulk gap ...
    state = min((s for s in vac.states if s["occupation"] == 0), key=lambda s: s["energy_eV"])
    assert 0.3 < state["e_minus_vbm_eV"] < bulk_gap - 0.3
    # ... and is far more localized than the bulk band-edge states
    assert state["ipr"] > 1.5 * max(s["ipr"] for s in _edges(bulk))
    assert state["localized"]
    # its main atom is the Pb nearest to the removed Br (found geometrically)
    site = np.loadtxt(qe_data / "cs4pbbr6_vbr" / "vacancy_site_cartesian_A.txt")
    s = proj.get_structure()
    frac = s.lattice.get_fractional_coords(site)
    pbs = [i for i, x in enumerate(s) if x.specie.symbol == "Pb"]
    nearest = min(pbs, key=lambda i: s[i].distance_and_image_from_frac_coords(frac)[0])
    assert state["top_atoms"][0]["index"] == nearest
    assert state["top_atoms"][0]["element"] == "Pb"


def test_defect_shell_pdos_holds_the_gap_state(qe_data: Path):
    proj = parse_projwfc(qe_data / "cs4pbbr6_vbr")
    site = np.loadtxt(qe_data / "cs4pbbr6_vbr" / "vacancy_site_cartesian_A.txt")
    groups = shell_groups(proj.get_structure(), site, 3.5, frac=False)
    inner = next(iter(groups))
    assert any(proj.species[i] == "Pb" for i in groups[inner])
    res = compute_pdos(proj, by=groups, sigma=0.05, window=(-1, 4))
    gap_state = (res.energies > 1.0) & (res.energies < 3.0)  # bulk gap region, above the VBM
    assert res.curves[inner][gap_state].sum() > res.curves["rest"][gap_state].sum()


def test_cspbbr3_pdos_edges_br_valence_pb_conduction(qe_data: Path):
    proj = parse_projwfc(qe_data / "cspbbr3_scf")
    res = compute_pdos(proj, by="element", sigma=0.05, window=(-2, 4))
    gap = res.cbm_eV - res.vbm_eV
    e = res.energies
    vb = (e > -1.0) & (e <= 0.1)
    cb = (e >= gap - 0.1) & (e < gap + 1.0)
    assert res.curves["Br"][vb].sum() > res.curves["Pb"][vb].sum()  # VBM: Br 4p (+Pb 6s)
    assert res.curves["Pb"][cb].sum() > res.curves["Br"][cb].sum()  # CBM: Pb 6p
    orb = compute_pdos(proj, by="element_orbital", sigma=0.05, window=(-2, 4))
    assert orb.curves["Pb-p"][cb].sum() > orb.curves["Pb-s"][cb].sum()


def test_total_dos_counts_all_states(qe_data: Path):
    proj = parse_projwfc(qe_data / "cspbbr3_scf")
    lo = proj.energies.min() - proj.fermi_eV - 1
    hi = proj.energies.max() - proj.fermi_eV + 1
    res = compute_pdos(proj, sigma=0.1, window=(lo, hi), step=0.005)
    integral = res.total.sum() * 0.005
    assert integral == pytest.approx(2 * proj.meta["nbnd"], rel=1e-3)  # 2 electrons per band
    # every state below ~VBM+3 eV has atomic character, so the groups add up to the total
    # (a few free-electron-like states higher up project on no atom at all)
    low = res.energies < 3.0
    groups = sum(res.curves.values())
    assert groups[low] == pytest.approx(res.total[low], abs=1e-5 * res.total.max())


def test_cspbbr3_bands_direct_gap_at_r(qe_data: Path, tmp_path: Path):
    res = analyze_bands(qe_data / "cspbbr3_bands")
    assert res.is_direct and res.vbm_kpoint["label"] == "R" and res.cbm_kpoint["label"] == "R"
    # the scf run (4x4x4 grid contains R) printed its own HOMO/LUMO
    scf = read_gz(qe_data / "cspbbr3_scf" / "pw.out.gz")
    homo, lumo = map(float, re.findall(r"lowest unoccupied level \(ev\):\s*(\S+)\s+(\S+)", scf)[0])
    assert res.band_gap_eV == pytest.approx(lumo - homo, abs=0.01)
    holes = [m for m in res.effective_masses if m["carrier"] == "hole"]
    elec = [m for m in res.effective_masses if m["carrier"] == "electron"]
    assert holes and elec and all(m["curvature_ok"] for m in res.effective_masses)
    # without spin-orbit coupling the Pb 6p CBM at R is threefold degenerate
    assert len({m["band"] for m in elec}) == 3
    png = plot_bands(qe_data / "cspbbr3_bands", tmp_path / "bands.png")
    assert png.stat().st_size > 10_000
