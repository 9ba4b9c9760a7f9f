"""Write an analytic GTH potential as a UPF v2 file that carries pseudo-atomic wavefunctions.

QE's own GTH reader (``.gth`` files, ABINIT HGH format) has no atomic wavefunctions, so
``projwfc.x`` cannot project on them and pw.x starts from random wavefunctions. This module
tabulates the same analytic potential (Hartwigsen–Goedecker–Hutter, PRB 58, 3641) on QE's
logarithmic mesh and adds the pseudo-atomic orbitals that CP2K's ATOM code computes for that
very potential (the kept tool that knows GTH potentials; run once per element, < 1 s).

Units: UPF wants Rydberg, so V_loc and D_ij are twice the Hartree values of the GTH file;
``PP_BETA`` holds r·p_i^l(r) and ``PP_CHI`` holds r·χ(r).
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.special import erf, gamma

from perovflow.engines.pseudos import GTHPotential
from perovflow.errors import EngineError

XMIN, DX, RMAX = -7.0, 0.0125, 100.0  # QE's own mesh for GTH (upflib gth_grid_for_rho)
L_LETTER = "spdf"
NOBLE_GASES = ("Rn", "Xe", "Kr", "Ar", "Ne", "He")


def log_mesh(znucl: int) -> tuple[np.ndarray, np.ndarray]:
    """QE's GTH mesh r_i = exp(xmin + i dx) / Z (odd number of points) and dr/di."""
    mesh = int(1 + (math.log(znucl * RMAX) - XMIN) / DX)
    mesh = (mesh // 2) * 2 + 1
    r = np.exp(XMIN + DX * np.arange(mesh)) / znucl
    return r, r * DX


def local_potential(pot: GTHPotential, r: np.ndarray) -> np.ndarray:
    """V_loc(r) in Hartree (HGH eq. 1)."""
    x = r / pot.rloc
    poly = sum(c * x ** (2 * i) for i, c in enumerate(pot.cexp))
    return -pot.valence / r * erf(x / math.sqrt(2)) + np.exp(-0.5 * x**2) * poly


def projector(r: np.ndarray, r_l: float, ll: int, i: int) -> np.ndarray:
    """p_i^l(r) of HGH eq. 3 (i = 1, 2, 3), normalised to 1 with r² dr."""
    power = ll + (4 * i - 1) / 2
    norm = math.sqrt(2) / (r_l**power * math.sqrt(gamma(power)))
    return norm * r ** (ll + 2 * (i - 1)) * np.exp(-(r**2) / (2 * r_l**2))


def valence_configuration(element: str, nelec: tuple[int, ...]) -> tuple[list, list]:
    """Split the ground-state configuration into (core, valence) orbitals ``(n, l, occ)``.

    The valence holds ``nelec[l]`` electrons of each l, taken from the outermost shells.
    """
    from pymatgen.core import Element

    full = [
        (n, L_LETTER.index(lt), float(occ))
        for n, lt, occ in Element(element).full_electronic_structure
    ]
    valence: list[tuple[int, int, float]] = []
    for ll, count in enumerate(nelec):
        left = float(count)
        for n, _l, occ in sorted((o for o in full if o[1] == ll), key=lambda o: -o[0]):
            if left <= 0:
                break
            take = min(occ, left)
            valence.append((n, ll, take))
            left -= take
        if left > 1e-8:
            raise EngineError(
                f"cannot place {count} valence {L_LETTER[ll]} electrons of {element}",
                "use a UPF pseudopotential folder (qe.pseudo_dir) for this element",
            )
    taken = {(n, ll): occ for n, ll, occ in valence}
    core = [(n, ll, occ - taken.get((n, ll), 0.0)) for n, ll, occ in full]
    return [o for o in core if o[2] > 1e-8], sorted(valence)


def _core_string(core: list[tuple[int, int, float]]) -> str:
    from pymatgen.core import Element

    orbitals = {(n, ll): occ for n, ll, occ in core}
    for gas in NOBLE_GASES:
        shells = [
            (n, L_LETTER.index(lt), float(o)) for n, lt, o in Element(gas).full_electronic_structure
        ]
        if all(orbitals.get((n, ll), 0.0) >= occ for n, ll, occ in shells):
            rest = dict(orbitals)
            for n, ll, occ in shells:
                rest[(n, ll)] -= occ
            extra = [
                f"{n}{L_LETTER[ll]}{occ:g}" for (n, ll), occ in sorted(rest.items()) if occ > 1e-8
            ]
            return " ".join([f"[{gas}]", *extra])
    return " ".join(f"{n}{L_LETTER[ll]}{occ:g}" for n, ll, occ in core) or "none"


def atom_wavefunctions(
    pot: GTHPotential, potential_file: Path, cp2k_cmd: str = "cp2k.psmp"
) -> list[dict]:
    """Pseudo-atomic orbitals of ``pot`` from CP2K's ATOM code.

    Returns one dict per valence orbital: ``n``, ``l``, ``occupation``, ``r``, ``chi``
    (r·χ on CP2K's grid, Bohr).
    """
    core, valence = valence_configuration(pot.element, pot.nelec)
    chis = _run_atom(_atom_input(pot, potential_file, core, valence), pot, cp2k_cmd)
    out = []
    for ll in sorted({o[1] for o in valence}):
        mine = sorted(o for o in valence if o[1] == ll)
        theirs = [c for c in chis if c[0] == ll]
        if len(theirs) != len(mine):
            raise EngineError(
                f"CP2K ATOM returned {len(theirs)} {L_LETTER[ll]} orbitals for {pot.element}, "
                f"expected {len(mine)}",
                "use a UPF folder (qe.pseudo_dir) for this element",
            )
        for (n, _, occ), (_, r, chi) in zip(mine, theirs, strict=True):
            # CP2K's UPF writer stores r²·χ(r) in PP_CHI (checked: ∫(chi/r)² dr = 1)
            out.append({"n": n, "l": ll, "occupation": occ, "r": r, "chi": chi / r})
    return out


def _atom_input(pot: GTHPotential, potential_file: Path, core: list, valence: list) -> str:
    """CP2K ATOM input: PBE Kohn–Sham atom in the GTH potential, written as a UPF file."""
    conf = " ".join(f"{n}{L_LETTER[ll]}{occ:g}" for n, ll, occ in valence)
    return f"""&GLOBAL
  PROJECT atom
  PROGRAM_NAME ATOM
  PRINT_LEVEL LOW
&END GLOBAL
&ATOM
  ELEMENT {pot.element}
  ELECTRON_CONFIGURATION CORE {conf}
  CORE {_core_string(core)}
  MAX_ANGULAR_MOMENTUM 3
  &METHOD
    METHOD_TYPE KOHN-SHAM
    &XC
      &XC_FUNCTIONAL PBE
      &END XC_FUNCTIONAL
    &END XC
  &END METHOD
  &PRINT
    &UPF_FILE
      FILENAME atom
    &END UPF_FILE
  &END PRINT
  &PP_BASIS
    BASIS_TYPE GEOMETRICAL_GTO
  &END PP_BASIS
  &POTENTIAL
    PSEUDO_TYPE GTH
    POTENTIAL_FILE_NAME {potential_file}
    POTENTIAL_NAME {pot.name}
  &END POTENTIAL
&END ATOM
"""


def _run_atom(text: str, pot: GTHPotential, cp2k_cmd: str) -> list:
    """Run CP2K ATOM on ``text`` in a scratch folder; (l, r, r²·χ) of the UPF it wrote."""
    from perovflow.engines.process import run_command

    with tempfile.TemporaryDirectory(prefix="perovflow-atom-") as tmp:
        work = Path(tmp)
        (work / "atom.inp").write_text(text)
        result = run_command(
            [*cp2k_cmd.split(), "-i", "atom.inp"], work, "atom.out", "atom.err",
            walltime_s=300, env={"OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        upf = sorted(work.glob("atom*.upf"))
        if result.returncode != 0 or not upf:
            raise EngineError(
                f"CP2K ATOM could not compute the {pot.element} {pot.name} atom: {result.tail(5)}",
                "check the cp2k installation (perovflow doctor) or use a UPF folder (qe.pseudo_dir)",
            )
        return _read_upf_chis(upf[0].read_text())


def _numbers(block: str) -> np.ndarray:
    body = block.split(">", 1)[1]
    return np.array([float(t) for t in body.split()])


def _read_upf_chis(text: str) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(l, r, r·χ) of every PP_CHI block of a UPF file."""
    r = _numbers(re.search(r"<PP_R\b(.*?)</PP_R>", text, re.S).group(1))
    out = []
    for m in re.finditer(r"<PP_CHI\.\d+\b(.*?)</PP_CHI\.\d+>", text, re.S):
        ll = int(re.search(r'\bl="\s*(\d+)"', m.group(1)).group(1))
        out.append((ll, r, _numbers(m.group(1))))
    return out


def _on_mesh(orbital: dict, r: np.ndarray, rab: np.ndarray) -> np.ndarray:
    """Interpolate r·χ onto the log mesh, zero beyond CP2K's grid, renormalise."""
    src_r, src = orbital["r"], orbital["chi"]
    order = np.argsort(src_r)
    spline = CubicSpline(np.log(src_r[order]), src[order])
    chi = np.where(r <= src_r.max(), spline(np.log(np.clip(r, src_r.min(), None))), 0.0)
    chi[r < src_r.min()] = src[order][0] * (r[r < src_r.min()] / src_r.min()) ** (orbital["l"] + 1)
    norm = float(np.sum(chi**2 * rab))
    return chi / math.sqrt(norm)


def _fmt(values: np.ndarray) -> str:
    rows = [" ".join(f"{v: .12e}" for v in values[i : i + 4]) for i in range(0, len(values), 4)]
    return "\n".join(rows)


def gth_to_upf(pot: GTHPotential, znucl: int, orbitals: list[dict], source: str) -> str:
    """Return the UPF v2 text of ``pot`` with ``orbitals`` as PP_PSWFC."""
    r, rab = log_mesh(znucl)
    vloc = 2.0 * local_potential(pot, r)
    betas, dij = _projectors(pot, r)
    cutoff = int(np.searchsorted(r, 12.0 * max((p[0] for p in pot.projectors), default=1.0)))
    cutoff = min(cutoff, len(r) - 1)
    chis = [(o, _on_mesh(o, r, rab)) for o in orbitals]
    rho = sum(o["occupation"] * chi**2 for o, chi in chis) if chis else np.zeros_like(r)
    lmax = max((b[0] for b in betas), default=-1)
    parts = [
        *_upf_head(pot, znucl, source, lmax, len(r), len(chis), len(betas)),
        f'<PP_R type="real" size="{len(r)}" columns="4">\n{_fmt(r)}\n</PP_R>',
        f'<PP_RAB type="real" size="{len(r)}" columns="4">\n{_fmt(rab)}\n</PP_RAB>',
        "</PP_MESH>",
        f'<PP_LOCAL type="real" size="{len(r)}" columns="4">\n{_fmt(vloc)}\n</PP_LOCAL>',
        *_upf_nonlocal(r, betas, dij, cutoff),
        "<PP_PSWFC>",
        *_upf_chis(r, chis),
        "</PP_PSWFC>",
        f'<PP_RHOATOM type="real" size="{len(r)}" columns="4">\n{_fmt(rho)}\n</PP_RHOATOM>',
        "</UPF>",
    ]
    return "\n".join(parts) + "\n"


def _projectors(pot: GTHPotential, r: np.ndarray) -> tuple[list, np.ndarray]:
    """(l, r·p_i^l) of every projector, and D_ij in Rydberg (block-diagonal in l)."""
    betas, dij_blocks = [], []
    for ll, (r_l, h) in enumerate(pot.projectors):
        for i in range(len(h)):
            betas.append((ll, r * projector(r, r_l, ll, i + 1)))
        dij_blocks.append(2.0 * np.array(h))
    nb = len(betas)
    dij = np.zeros((nb, nb))
    start = 0
    for block in dij_blocks:
        k = block.shape[0]
        dij[start : start + k, start : start + k] = block
        start += k
    return betas, dij


def _upf_head(
    pot: GTHPotential, znucl: int, source: str, lmax: int, mesh: int, nwfc: int, nb: int
) -> list[str]:
    """PP_INFO, PP_HEADER and the opening PP_MESH tag."""
    return [
        '<UPF version="2.0.1">',
        f"<PP_INFO>\nGTH {pot.name} for {pot.element} (analytic, tabulated on the QE GTH mesh)"
        f"\nwavefunctions: CP2K ATOM, PBE. Converted by perovflow from {source}\n</PP_INFO>",
        f'<PP_HEADER generated="perovflow gth_to_upf" author="Goedecker/Hartwigsen/Hutter/Teter/Krack"'
        f' date="" comment="{pot.name}" element="{pot.element:2s}" pseudo_type="NC"'
        ' relativistic="scalar" is_ultrasoft="F" is_paw="F" is_coulomb="F" has_so="F" has_wfc="F"'
        ' has_gipaw="F" paw_as_gipaw="F" core_correction="F" functional="PBE"'
        f' z_valence="{pot.valence:.6f}" total_psenergy="0.0" wfc_cutoff="0.0" rho_cutoff="0.0"'
        f' l_max="{lmax}" l_max_rho="{max(2 * lmax, 0)}" l_local="-1" mesh_size="{mesh}"'
        f' number_of_wfc="{nwfc}" number_of_proj="{nb}"/>',
        f'<PP_MESH dx="{DX}" mesh="{mesh}" xmin="{XMIN}" rmax="{RMAX}" zmesh="{znucl}">',
    ]


def _upf_nonlocal(r: np.ndarray, betas: list, dij: np.ndarray, cutoff: int) -> list[str]:
    """The PP_NONLOCAL block: one PP_BETA per projector, then PP_DIJ."""
    nb = len(betas)
    parts = ["<PP_NONLOCAL>"]
    for i, (ll, beta) in enumerate(betas, start=1):
        parts.append(
            f'<PP_BETA.{i} type="real" size="{len(r)}" columns="4" index="{i}"'
            f' angular_momentum="{ll}" cutoff_radius_index="{cutoff}" cutoff_radius="{r[cutoff]:.6f}"'
            f' ultrasoft_cutoff_radius="{r[cutoff]:.6f}">\n{_fmt(beta)}\n</PP_BETA.{i}>'
        )
    parts.append(
        f'<PP_DIJ type="real" size="{nb * nb}" columns="4">\n{_fmt(dij.ravel())}\n</PP_DIJ>'
    )
    return [*parts, "</PP_NONLOCAL>"]


def _upf_chis(r: np.ndarray, chis: list) -> list[str]:
    """One PP_CHI block per pseudo-atomic orbital (r·χ on the log mesh)."""
    parts = []
    for i, (o, chi) in enumerate(chis, start=1):
        label = f"{o['n']}{L_LETTER[o['l']].upper()}"
        parts.append(
            f'<PP_CHI.{i} type="real" size="{len(r)}" columns="4" label="{label}" l="{o["l"]}"'
            f' occupation="{o["occupation"]:.6f}" n="{o["n"]}" pseudo_energy="0.0"'
            f' cutoff_radius="0.0" ultrasoft_cutoff_radius="0.0">\n{_fmt(chi)}\n</PP_CHI.{i}>'
        )
    return parts
