"""CP2K hybrid functionals (HSE06, PBE0) with the auxiliary density matrix method (ADMM).

:func:`apply_hybrid` turns a PBE input tree of :func:`perovflow.engines.cp2k.inputs.cp2k_input_set`
into a hybrid one when the protocol's ``xc`` (or the user's) is ``hse06`` or ``pbe0``:

* **HSE06**: ``&HF`` with the short-range Coulomb operator (``SHORTRANGE``, ω = 0.11 bohr⁻¹),
  ``FRACTION 0.25``; the semilocal part is PBE correlation, full PBE exchange
  (``XWPBE SCALE_X0 1``) minus 0.25 of the short-range ωPBE exchange (``XWPBE SCALE_X -0.25``).
* **PBE0**, periodic: the truncated Coulomb operator (``TRUNCATED``, ``CUTOFF_RADIUS`` R_c,
  CP2K's ``t_c_g.dat``), 0.75 PBE exchange plus 0.25 of PBE's long-range exchange hole beyond
  R_c (``PBE_HOLE_T_C_LR``); R_c must stay below half the cell's smallest width (minimum
  image at Γ). Clusters: the plain Coulomb operator (no periodic images to truncate).
* **ADMM** (``METHOD BASIS_PROJECTION``, no purification, which works with diagonalisation
  and smearing as with OT; ``EXCH_CORRECTION_FUNC DEFAULT``: the PBE-type correction that
  matches the operator): exact exchange is computed in a small auxiliary basis,
  :data:`AUX_BASIS` per element, from cp2k-data.
* ``&SCREENING EPS_SCHWARZ`` and ``&MEMORY MAX_MEMORY`` (MiB per MPI rank) from the options.

Hybrids run at Γ only (CP2K 2023.1 has exact exchange with k-points only through RI-HFX,
not set up here): a periodic cell must be a supercell large enough for ``kpoints: gamma``
(e.g. 2x2x2 cubic CsPbBr3, whose R point folds onto Γ). The PBE wavefunction of the same atoms
is the starting guess when the maker gets ``prev_dir`` (``WFN_RESTART_FILE_NAME``, same
primary basis), which saves most of the expensive hybrid SCF cycles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from perovflow.errors import InputError

HYBRIDS = ("hse06", "pbe0")
HSE_OMEGA = 0.11  # bohr⁻¹ (HSE06, Krukau et al. J. Chem. Phys. 125, 224106 (2006))
EXX_FRACTION = 0.25

#: Hybrid options of the input set (lower-case ``input_set_overrides`` keys) and defaults.
HYBRID_OPTIONS: dict[str, Any] = {
    "eps_schwarz": 1.0e-6,  # HFX integral screening
    "max_memory_mib": 2000,  # HFX integral storage per MPI rank
    "hf_cutoff_radius_A": None,  # PBE0 truncation radius; None: min(6 Å, half width - 0.5 Å)
    "admm": True,  # False: exact exchange in the primary basis (much more expensive)
    "aux_basis": None,  # {element: name} wins over AUX_BASIS
}

#: Element -> (cp2k-data file, auxiliary basis). BASIS_ADMM_MOLOPT's contracted fits of the
#: MOLOPT bases (Ling & Slater) where it has the element, the smallest set (cost); Cl from
#: BASIS_ADMM (Guidon et al. cFIT3, Cl q7); Na from BASIS_ADMM_UZH (admm-dzp-q9, which matches
#: the q9 GTH potential; BASIS_ADMM's cFIT3 was fitted for another valence).
AUX_BASIS: dict[str, tuple[str, str]] = {
    "Cs": ("BASIS_ADMM_MOLOPT", "cFIT7"),
    "Pb": ("BASIS_ADMM_MOLOPT", "cFIT6"),
    "Br": ("BASIS_ADMM_MOLOPT", "cFIT6"),
    "I": ("BASIS_ADMM_MOLOPT", "cFIT6"),
    "Bi": ("BASIS_ADMM_MOLOPT", "cFIT6"),
    "Sn": ("BASIS_ADMM_MOLOPT", "cFIT6"),
    "Ag": ("BASIS_ADMM_MOLOPT", "cFIT9"),
    "Cl": ("BASIS_ADMM", "cFIT3"),
    "Na": ("BASIS_ADMM_UZH", "admm-dzp-q9"),
}
_ADMM_FILES = ("BASIS_ADMM_MOLOPT", "BASIS_ADMM", "BASIS_ADMM_UZH")


def is_hybrid(xc: str) -> bool:
    """Whether ``xc`` names a hybrid functional handled here."""
    return str(xc).lower() in HYBRIDS


def half_width(cell: np.ndarray) -> float:
    """Half the smallest distance between opposite cell faces (Å): the minimum-image radius."""
    cell = np.asarray(cell, dtype=float)
    volume = abs(np.linalg.det(cell))
    widths = [
        volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)
    ]
    return 0.5 * min(widths)


def truncation_radius(cell: np.ndarray, user: float | None) -> float:
    """PBE0 truncation radius (Å): the user's, checked, or min(6 Å, half width - 0.5 Å).

    Raises
    ------
    InputError
        If the radius reaches half the cell width (exact exchange would see an atom's own
        periodic image), or the cell is too small for any radius.
    """
    limit = half_width(cell)
    if user is not None:
        if not 0 < float(user) < limit:
            raise InputError(
                f"PBE0 truncation radius {user} Å must be positive and below half the cell "
                f"width ({limit:.2f} Å)",
                f"set hf_cutoff_radius_A below {limit:.2f}, or use a larger supercell",
            )
        return float(user)
    radius = min(6.0, limit - 0.5)
    if radius < 1.5:
        raise InputError(
            f"cell too small for truncated exact exchange (half width {limit:.2f} Å)",
            "use a supercell (e.g. 2x2x2) with kpoints: gamma",
        )
    return float(round(radius, 3))


def xc_section(xc: str, periodic: bool, cell: np.ndarray, opts: dict, data_dir: Path) -> dict:
    """``&XC`` (functional pieces and ``&HF``) of ``hse06`` or ``pbe0``."""
    hf: dict[str, Any] = {
        "FRACTION": EXX_FRACTION,
        "SCREENING": {"EPS_SCHWARZ": float(opts["eps_schwarz"]), "SCREEN_ON_INITIAL_P": False},
        "MEMORY": {"MAX_MEMORY": int(opts["max_memory_mib"]), "EPS_STORAGE_SCALING": 0.1},
    }
    if xc == "hse06":
        functional = {
            "PBE": {"SCALE_X": 0.0, "SCALE_C": 1.0},
            "XWPBE": {"SCALE_X": -EXX_FRACTION, "SCALE_X0": 1.0, "OMEGA": HSE_OMEGA},
        }
        hf["INTERACTION_POTENTIAL"] = {"POTENTIAL_TYPE": "SHORTRANGE", "OMEGA": HSE_OMEGA}
    elif periodic or opts["hf_cutoff_radius_A"] is not None:
        radius = truncation_radius(cell, opts["hf_cutoff_radius_A"])
        functional = {
            "PBE": {"SCALE_X": 1 - EXX_FRACTION, "SCALE_C": 1.0},
            "PBE_HOLE_T_C_LR": {"CUTOFF_RADIUS": radius, "SCALE_X": EXX_FRACTION},
        }
        hf["INTERACTION_POTENTIAL"] = {
            "POTENTIAL_TYPE": "TRUNCATED",
            "CUTOFF_RADIUS": radius,
            "T_C_G_DATA": str(data_dir / "t_c_g.dat"),
        }
    else:
        functional = {"PBE": {"SCALE_X": 1 - EXX_FRACTION, "SCALE_C": 1.0}}
        hf["INTERACTION_POTENTIAL"] = {"POTENTIAL_TYPE": "COULOMB"}
    return {"XC_FUNCTIONAL": functional, "HF": hf}


def aux_basis(elements: list[str], opts: dict, data_dir: Path) -> dict[str, tuple[str, str]]:
    """Element -> (file path, auxiliary basis name); user names win over :data:`AUX_BASIS`.

    Raises
    ------
    InputError
        If an element has no auxiliary basis, or a user's name is in none of the ADMM files.
    """
    from perovflow.engines.cp2k.basis import _basis_names

    user = opts.get("aux_basis") or {}
    out: dict[str, tuple[str, str]] = {}
    for el in elements:
        if el in user:
            for name in _ADMM_FILES:
                path = data_dir / name
                if path.is_file():
                    entries = _basis_names(str(path), path.stat().st_mtime).get(el, [])
                    if any(user[el] in e for e in entries):
                        out[el] = (str(path), str(user[el]))
                        break
            else:
                raise InputError(
                    f"auxiliary basis '{user[el]}' for {el} is in none of {', '.join(_ADMM_FILES)}",
                    f"pick a name listed for {el} in {data_dir}/BASIS_ADMM*",
                )
        elif el in AUX_BASIS:
            out[el] = (str(data_dir / AUX_BASIS[el][0]), AUX_BASIS[el][1])
        else:
            raise InputError(
                f"no ADMM auxiliary basis for {el} (perovflow has {', '.join(sorted(AUX_BASIS))})",
                f"give one with input_set_overrides aux_basis={{'{el}': NAME}} or set admm: false",
            )
    return out


def check_gamma(xc: str, kgrid: Any) -> None:
    """A hybrid with a k-point grid is a one-line error (exact exchange is Γ-only here)."""
    if is_hybrid(xc) and kgrid is not None:
        raise InputError(
            f"CP2K {xc} runs here at Γ only (k-point grid {kgrid} asked)",
            "use kpoints: gamma with a supercell (e.g. 2x2x2 for cubic CsPbBr3)",
        )


def apply_hybrid(
    params: dict, xc: str, placed: Any, periodic: bool, kgrid: Any, opts: dict
) -> dict:
    """Make ``params`` (a PBE tree, changed in place) HSE06 or PBE0; returns a summary.

    Raises
    ------
    InputError
        k-points with a hybrid, or any impossible setting of :func:`truncation_radius` and
        :func:`aux_basis`.
    """
    from perovflow.settings import get_settings

    dft = params["FORCE_EVAL"]["DFT"]
    check_gamma(xc, kgrid)
    data_dir = Path(get_settings().cp2k.data_dir).expanduser()
    hybrid = xc_section(xc, periodic, placed.cell[:], opts, data_dir)
    dft["XC"] = {**dft["XC"], **hybrid}
    summary: dict[str, Any] = {"xc": xc, "hf": hybrid["HF"]["INTERACTION_POTENTIAL"]}
    if not opts["admm"]:
        return summary
    elements = sorted(set(placed.get_chemical_symbols()))
    aux = aux_basis(elements, opts, data_dir)
    given = dft["BASIS_SET_FILE_NAME"]  # one file, or already the repeated keyword
    files = [given] if isinstance(given, str) else [f[0] for f in given]
    files += [p for p in sorted({path for path, _ in aux.values()}) if p not in files]
    dft["BASIS_SET_FILE_NAME"] = [[f] for f in files]  # repeated keyword
    for el, (_, name) in aux.items():
        kind = params["FORCE_EVAL"]["SUBSYS"][f"KIND {el}"]
        kind["BASIS_SET"] = [[kind["BASIS_SET"]], ["AUX_FIT", name]]  # repeated keyword
    dft["AUXILIARY_DENSITY_MATRIX_METHOD"] = {
        "METHOD": "BASIS_PROJECTION",
        "ADMM_PURIFICATION_METHOD": "NONE",
        "EXCH_CORRECTION_FUNC": "DEFAULT",
    }
    summary["aux_basis"] = {el: name for el, (_, name) in aux.items()}
    return summary


def screen_on_restart(params: dict, overrides: dict) -> None:
    """Screen exact exchange on the restart density (``SCREEN_ON_INITIAL_P``), in place.

    Only for hybrid runs that start from a previous wavefunction, and unless the user's raw
    ``&SCREENING`` sets it: the PBE density matrix then prunes the first step's integrals.
    """
    screening = params["FORCE_EVAL"]["DFT"].get("XC", {}).get("HF", {}).get("SCREENING")
    user = overrides.get("FORCE_EVAL", {}).get("DFT", {}).get("XC", {}).get("HF", {})
    if screening is not None and "SCREEN_ON_INITIAL_P" not in user.get("SCREENING", {}):
        screening["SCREEN_ON_INITIAL_P"] = True
