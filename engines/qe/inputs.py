"""pw.x input sets: protocol presets, automatic choices, then the user's overrides on top.

The parameter dict handed to ASE's Espresso template has this shape::

    {"input_data": {"control": {...}, "system": {...}, "electrons": {...}, "ions": {...}},
     "kpts": [n1, n2, n3] | None, "koffset": [0, 0, 0], "pseudopotentials": {El: file}}

Order of precedence (lowest first): protocol (``get_protocol(name, "qe")``), automatic
logic (k grid from the k spacing, twice as dense for metals; number of bands; cold smearing
for metals, narrow smearing for defects/odd electron counts; spin polarisation, see
:func:`spin_settings`; pools), user
``input_set_overrides``. User keys may be nested (``{"system": {"ecutwfc":
30}}``), dotted (``"system.ecutwfc"``) or bare (``"ecutwfc"``: the namelist is looked up in
ASE's table of pw.x keywords); ``kpts``, ``koffset`` and ``kspacing`` are top-level keys.
"""

from __future__ import annotations

import math
import re
from typing import Any

from perovflow.engines.protocols import get_protocol, kpoint_grid, merge
from perovflow.engines.qe.hybrid import check_hybrid, hybrid_settings, resolve_xc
from perovflow.engines.qe.soc import apply_soc, resolve_soc
from perovflow.errors import InputError

RY_EV = 13.605693122994
BOHR_A = 0.529177210903
FORCE_RY_BOHR_PER_EV_A = BOHR_A / RY_EV  # 1 eV/Å in Ry/bohr
TOP_LEVEL = ("kpts", "koffset", "kspacing")
CALCULATION = {"static": "scf", "relax": "relax", "bands": "bands", "dos": "nscf"}
METAL_SMEARING_EV = 0.2  # cold smearing of metallic cells (0.015 Ry; SSSP-style)
METAL_KSPACING_FACTOR = 0.5  # metals: twice the k-point density of the protocol


def is_metallic(symbols: list[str]) -> bool:
    """A cell made of metals only (Cs, Pb, Bi, beta-Sn...): no gap, so smear and sample densely."""
    from pymatgen.core import Element

    return bool(symbols) and all(Element(s).is_metal for s in set(symbols))


def nest_overrides(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Turn user overrides (nested, dotted or bare pw.x keys) into the nested layout."""
    from ase.io.espresso_namelist.keys import ALL_KEYS
    from ase.io.espresso_namelist.namelist import Namelist

    out: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        low = key.lower()
        if low in ALL_KEYS["pw"] and isinstance(value, dict):
            out = merge(out, {"input_data": {low: value}})
        elif low in TOP_LEVEL or low in ("input_data", "pseudopotentials"):
            out = merge(out, {low: value})
        elif "." in low:
            section, name = low.split(".", 1)
            if section not in ALL_KEYS["pw"]:
                raise InputError(
                    f"unknown pw.x namelist '{section}' in '{key}'",
                    f"use one of {', '.join(ALL_KEYS['pw'])} (e.g. system.ecutwfc=30)",
                )
            out = merge(out, {"input_data": {section: {name: value}}})
        else:
            section = Namelist.search_key(low, ALL_KEYS["pw"])
            if section is None:
                raise InputError(
                    f"unknown pw.x keyword '{key}'",
                    "check the spelling against the pw.x input documentation "
                    "(or give it as namelist.keyword)",
                )
            out = merge(out, {"input_data": {section: {low: value}}})
    return out


SPIN_KEYS = ("nspin", "tot_magnetization", "noncolin", "lspinorb")


def spin_settings(
    nelect: float, metal: bool, spin: bool | None, user_system: dict[str, Any]
) -> dict[str, Any]:
    """Automatic spin keys of the ``system`` namelist (empty: spin-restricted, ``nspin=1``).

    The spin state is the lowest one the electron count allows, fixed through
    ``tot_magnetization`` (n_up - n_down = 1 for an odd count, 0 for an even one): the
    same state as CP2K's automatic ``MULTIPLICITY`` 2 / 1 with UKS, so both codes compute
    the same spin state of a cell. ``spin=None`` polarises odd electron counts of
    non-metals (a Br vacancy's unpaired electron); metals stay restricted (their odd
    count is a partly filled band, not a moment). ``spin=True`` polarises any cell,
    ``spin=False`` none. Any user spin key (:data:`SPIN_KEYS`) switches the automatic
    choice off: the user's settings are used as given (``tot_magnetization`` alone also
    gets ``nspin=2``, which pw.x requires).
    """
    given = {k for k in user_system if k in SPIN_KEYS or k.startswith("starting_magnetization")}
    if given:
        return {"nspin": 2} if given == {"tot_magnetization"} else {}
    odd = round(nelect) % 2 == 1 and abs(nelect - round(nelect)) < 1e-6
    if spin is False or (spin is None and (metal or not odd)):
        return {}
    return {"nspin": 2, "tot_magnetization": 1.0 if odd else 0.0}


def count_electrons(symbols: list[str], valences: dict[str, float], charge: float) -> float:
    """Valence electrons of the cell minus the charge."""
    try:
        return sum(valences[s] for s in symbols) - charge
    except KeyError as exc:
        raise InputError(f"no valence known for element {exc.args[0]}", "check pseudos") from None


def upf_valence(path: str) -> float:
    """Read ``z_valence`` from a UPF file (v1 or v2)."""
    with open(path, errors="replace") as fh:
        head = fh.read(20000)
    m = re.search(r'z_valence\s*=\s*"\s*([-+0-9.EeDd]+)', head) or re.search(
        r"([-+0-9.EeDd]+)\s+Z valence", head
    )
    if not m:
        raise InputError(f"cannot read the valence from {path}", "use a standard UPF file")
    return float(m.group(1).replace("D", "E").replace("d", "e"))


def qe_input_set(
    atoms: Any,
    calc_type: str,
    protocol: str,
    pseudos: dict[str, Any],
    *,
    charge: float = 0.0,
    defect: bool = False,
    overrides: dict[str, Any] | None = None,
    spin: bool | None = None,
    soc: bool | None = None,
    xc: str | None = None,
    hybrid: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the pw.x parameters for ``atoms`` (an ASE Atoms).

    Parameters
    ----------
    atoms
        The structure (ASE Atoms, periodic).
    calc_type
        ``static``, ``relax``, ``bands`` or ``dos``.
    protocol
        Protocol name (``fast``, ``standard``, ``seed``).
    pseudos
        ``{element: Pseudo}`` from :func:`perovflow.engines.pseudos.get_pseudos`.
    charge
        Total charge (e), written as ``tot_charge``.
    defect
        Defect cell: smearing and the defect force threshold.
    overrides
        User settings; they win over everything else (a user ``nspin``,
        ``tot_magnetization`` or ``noncolin`` replaces the automatic spin choice).
    spin
        Spin polarisation: None (default) for odd electron counts of non-metals, True
        always, False never (see :func:`spin_settings`).
    soc
        Spin–orbit (non-collinear) run; None takes the protocol's ``soc``
        (:mod:`perovflow.engines.qe.soc`).
    xc
        ``pbe``, ``hse06`` or ``pbe0``; None takes the protocol's ``xc``
        (:mod:`perovflow.engines.qe.hybrid`).
    hybrid
        Maker-level hybrid options (``nqx``, ``ecutfock_eV``) over the protocol's.
    """
    proto = cutoffs_for_pseudos(get_protocol(protocol, "qe"), pseudos)
    user = nest_overrides(overrides)
    nelect = count_electrons(atoms.get_chemical_symbols(), _valences(pseudos), charge)
    metal = is_metallic(atoms.get_chemical_symbols())
    input_data = _namelists(proto, calc_type, charge, defect, nelect, metal)
    input_data = _spin_and_soc(input_data, proto, user, nelect, metal, spin, soc)
    params = _ase_params(input_data, pseudos, _kgrid(atoms, proto, user, calc_type, metal))
    kpts = user.get("kpts", params["kpts"])
    _add_hybrid(input_data, resolve_xc(xc, proto, user), proto, atoms.cell[:], kpts, hybrid)
    params = merge(params, {k: v for k, v in user.items() if k != "kspacing"})
    check_hybrid(params, pseudos, calc_type)
    params["_nelect"] = nelect
    return params


def _ase_params(
    input_data: dict[str, Any], pseudos: dict[str, Any], kpts: list[int]
) -> dict[str, Any]:
    """ASE Espresso parameters: namelists, pseudopotential files, unshifted k grid."""
    return {
        "input_data": input_data,
        "pseudopotentials": {el: p.name for el, p in pseudos.items()},
        "koffset": [0, 0, 0],
        "kpts": kpts,
    }


def _spin_and_soc(
    input_data: dict[str, Any],
    proto: dict[str, Any],
    user: dict[str, Any],
    nelect: float,
    metal: bool,
    spin: bool | None,
    soc: bool | None,
) -> dict[str, Any]:
    """The namelists with the automatic spin keys (:func:`spin_settings`) or spin–orbit.

    Spinor (SOC) runs are left non-magnetic unless the user says otherwise.
    """
    spin_keys = spin_settings(nelect, metal, spin, user.get("input_data", {}).get("system", {}))
    soc_on = resolve_soc(soc, proto, user)
    if not soc_on:
        input_data["system"].update(spin_keys)
    return apply_soc(input_data, soc_on, nelect)


def _add_hybrid(
    input_data: dict[str, Any],
    xc: str,
    proto: dict[str, Any],
    cell: Any,
    kpts: Any,
    hybrid: dict[str, Any] | None,
) -> None:
    """Add the exact-exchange keys of a hybrid ``xc`` to ``system`` (nothing for PBE).

    pw.x 6.7: "stress for hybrid functionals not available with pools", so no stress.
    """
    exx = hybrid_settings(xc, proto, cell, kpts, hybrid or {})
    if exx:
        input_data["system"].update(exx)
        input_data["control"]["tstress"] = False


def _valences(pseudos: dict[str, Any]) -> dict[str, float]:
    """Valence of each element: the pseudopotential record's, else its UPF ``z_valence``."""
    return {
        el: (p.valence if p.valence is not None else upf_valence(str(p.path)))
        for el, p in pseudos.items()
    }


def _kgrid(atoms: Any, proto: dict, user: dict, calc_type: str, metal: bool) -> list[int]:
    """Automatic k grid: the user's or the protocol's k spacing, halved for DOS and metals."""
    factor = (0.5 if calc_type == "dos" else 1.0) * (METAL_KSPACING_FACTOR if metal else 1.0)
    kspacing = user.get("kspacing", proto["kspacing"] * factor)
    return kpoint_grid(atoms.cell[:], kspacing, tuple(atoms.pbc))


def pseudo_kind(path: str) -> str:
    """``nc``, ``us`` or ``paw`` from a UPF file's header (UPF v2 attributes or v1 line)."""
    with open(path, errors="replace") as fd:
        head = fd.read(4000)
    m = re.search(r'pseudo_type\s*=\s*"\s*(\w+)', head, re.IGNORECASE)
    if m is None:
        m = re.search(r"<PP_HEADER>\s*\n[^\n]*\n\s*(NC|US|PAW|SL)\b", head)
    kind = (m.group(1) if m else "NC").upper()
    return {"US": "us", "USPP": "us", "PAW": "paw"}.get(kind, "nc")


def cutoffs_for_pseudos(proto: dict[str, Any], pseudos: dict[str, Any]) -> dict[str, Any]:
    """The protocol's cutoffs for the potentials of this cell.

    * ``ultrasoft`` block: used when any pseudopotential is ultrasoft or PAW. The ``seed``
      protocol's cutoffs are those measured for the shipped norm-conserving GTH family; the
      seed papers' 500/5000 eV belong to their ultrasoft potentials and come back when the
      user's ``qe.pseudo_dir`` holds such files.
    * ``family_cutoffs`` block (``{family: {ecutwfc_eV, ecutrho_eV}}``): floors for the
      potentials of a family that converge more slowly than the protocol's measured cutoffs
      (pw.x's built-in Na, ``ld1-sr-pbe``, needs 140 Ry where the GTH set needs 80 Ry); the
      cutoffs are raised to them when such a potential is in the cell.
    """
    proto = dict(proto)
    soft = proto.pop("ultrasoft", None)
    floors = proto.pop("family_cutoffs", None) or {}
    if soft and any(pseudo_kind(str(p.path)) != "nc" for p in pseudos.values()):
        proto = {**proto, **soft}
    for family in {getattr(p, "family", None) for p in pseudos.values()} & set(floors):
        for key in ("ecutwfc_eV", "ecutrho_eV"):
            proto[key] = max(proto[key], floors[family][key])
    return proto


def _namelists(
    proto: dict[str, Any],
    calc_type: str,
    charge: float,
    defect: bool,
    nelect: float,
    metal: bool = False,
) -> dict[str, Any]:
    """Protocol values and automatic choices, as pw.x namelists.

    Metallic cells get Marzari-Vanderbilt cold smearing of at least ``METAL_SMEARING_EV``;
    defect cells and odd electron counts a narrow Gaussian (``smearing_eV``), spin-polarised
    or not (with a fixed ``tot_magnetization`` pw.x then reports one Fermi level per spin;
    fixed occupations let near-degenerate levels of small odd cells slosh and never converge).
    """
    if calc_type not in CALCULATION:
        raise InputError(f"unknown QE calculation '{calc_type}'", f"use one of {list(CALCULATION)}")
    control = _control(proto, calc_type, defect)
    system: dict[str, Any] = {
        "ecutwfc": proto["ecutwfc_eV"] / RY_EV,
        "ecutrho": proto["ecutrho_eV"] / RY_EV,
        "tot_charge": float(charge),
        "nbnd": math.ceil(nelect / 2 * 1.2) + 4,
        **_occupations(proto, defect, nelect, metal),
    }
    if proto.get("dispersion") == "d3":
        system["vdw_corr"] = "dft-d3"
    elif proto.get("dispersion"):
        raise InputError(
            f"dispersion '{proto['dispersion']}' is not supported for QE",
            "use d3 or null in the protocol",
        )
    electrons = {
        "conv_thr": proto["scf_conv_eV"] / RY_EV,
        "mixing_beta": 0.4,
        "electron_maxstep": 100,
    }
    if calc_type in ("bands", "dos"):
        electrons["diago_full_acc"] = True
    out = {"control": control, "system": system, "electrons": electrons}
    if calc_type == "relax":
        out["ions"] = {"ion_dynamics": "bfgs"}
    return out


def _control(proto: dict[str, Any], calc_type: str, defect: bool) -> dict[str, Any]:
    """The ``control`` namelist; non-self-consistent runs print all bands, no forces/stress."""
    fmax = proto["fmax_defect"] if defect else proto["fmax_bulk"]
    control = {
        "calculation": CALCULATION[calc_type],
        "prefix": "pwscf",
        "outdir": "./",
        "tprnfor": True,
        "tstress": True,
        "disk_io": "low",
        "forc_conv_thr": fmax * FORCE_RY_BOHR_PER_EV_A,
        "etot_conv_thr": 1e-5,
        "nstep": proto["max_steps"],
    }
    if calc_type in ("bands", "dos"):
        control["verbosity"] = "high"
        control.pop("tstress")
        control.pop("tprnfor")
    return control


def _occupations(proto: dict[str, Any], defect: bool, nelect: float, metal: bool) -> dict:
    """Occupation keys of ``system``: cold smearing (metals), Gaussian (defects, odd), fixed."""
    odd = abs(nelect - 2 * round(nelect / 2)) > 1e-6
    if metal:
        width = max(proto["smearing_eV"], proto.get("metal_smearing_eV", METAL_SMEARING_EV))
        return {"occupations": "smearing", "smearing": "mv", "degauss": width / RY_EV}
    if defect or odd:
        return {
            "occupations": "smearing",
            "smearing": "gaussian",
            "degauss": proto["smearing_eV"] / RY_EV,
        }
    return {"occupations": "fixed"}


def cell_relax_settings(
    params: dict[str, Any], protocol: str, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Turn a ``relax`` input set into a ``vc-relax`` (positions and cell, BFGS).

    The target pressure, the stress threshold and the free cell components come from the
    protocol (``press_kbar``, ``press_conv_kbar``, ``cell_dofree``); the user's
    ``overrides`` are laid over the result again, so they still win. ``params`` is not
    modified.
    """
    proto = get_protocol(protocol, "qe")
    cell = {
        "cell_dynamics": "bfgs",
        "press": float(proto["press_kbar"]),
        "press_conv_thr": float(proto["press_conv_kbar"]),
        "cell_dofree": str(proto["cell_dofree"]),
    }
    out = merge(
        params,
        {
            "input_data": {
                "control": {"calculation": "vc-relax"},
                "ions": {"ion_dynamics": "bfgs"},
                "cell": cell,
            }
        },
    )
    user = nest_overrides(overrides)
    out = merge(out, {k: v for k, v in user.items() if k not in ("kspacing", "kpts")})
    if out["input_data"]["control"]["calculation"] not in ("vc-relax", "vc-md"):
        out["input_data"].pop("cell")  # the user chose a fixed cell: no &CELL namelist
    return out
