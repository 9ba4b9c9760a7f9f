"""CP2K input sets (GPW, GTH pseudopotentials, MOLOPT basis) as plain nested dicts.

The parameter dict mirrors the CP2K input tree with upper-case section and keyword names,
exactly as custodian's CP2K handlers address it (``FORCE_EVAL -> DFT -> SCF -> OT``), so their
corrections apply to it unchanged. Conventions of the dict:

* ``"KIND Cs": {...}`` is a section with a parameter (``&KIND Cs``);
* a list of dicts is a repeated section (``LDOS``), a list of lists a repeated keyword
  (``KPOINT``), a list of scalars one keyword with several values (``ABC``);
* ``True``/``False`` become ``T``/``F``; a value ``None`` drops the keyword or section, so
  a user override can remove an automatic choice.

Coordinates go to ``coords.xyz`` (``&TOPOLOGY COORD_FILE_NAME``) so that nothing that rewrites
``cp2k.inp`` can reorder the atoms.

Steps of :func:`cp2k_input_set`: protocol -> options (user overrides) -> cell and Poisson
solver (periodic or cluster) -> kinds (basis + potential) -> SCF (diagonalisation or OT,
k-points) -> prints (MO eigenvalues, per-atom PDOS) -> run type (energy/forces, GEO_OPT or CELL_OPT)
-> raw CP2K overrides laid on top.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase.units import Bohr, Hartree, Rydberg, kB

from perovflow.engines.cp2k.basis import _data_path, basis_files, basis_for
from perovflow.engines.cp2k.hybrid import HYBRID_OPTIONS, apply_hybrid, check_gamma, is_hybrid
from perovflow.engines.cp2k.system import (
    cell_and_poisson,
    cp2k_kgrid,
    gamma_centred_kpoints,
    integer_charge,
    periodicity,
)
from perovflow.engines.protocols import get_protocol, merge
from perovflow.errors import InputError

PROJECT = "cp2k"
INPUT_FILE = "cp2k.inp"
OUTPUT_FILE = "cp2k.out"
COORD_FILE = "coords.xyz"
FORCE_AU = Hartree / Bohr  # eV/Å per Ha/bohr

#: Options of the input set (lower-case keys of ``input_set_overrides``) and their defaults.
OPTIONS: dict[str, Any] = {
    "kpoints": "auto",  # "auto" (protocol kspacing), "gamma" or [n1, n2, n3]
    "scf": None,  # "diag" (Broyden + Fermi-Dirac smearing) or "ot"; None: ot for hybrids
    "max_scf": 100,
    "eps_scf": None,  # None: from scf_conv_eV
    "eps_default": None,  # None: 1e-10 (fast) / 1e-12
    "n_unoccupied": 20,  # ADDED_MOS / PDOS NLUMO
    "poisson": "wavelet",  # clusters: "wavelet" or "mt"
    "vacuum_A": 6.0,  # clusters: empty space on each side of the atoms
    "projections": True,  # static: per-atom PDOS (Gamma only)
    "fmax": None,  # relax: None -> fmax_bulk / fmax_defect
    "optimizer": None,  # relax: None -> BFGS (LBFGS above 300 atoms)
    "walltime_s": None,
    **HYBRID_OPTIONS,  # hse06 / pbe0: HFX screening, memory, truncation, ADMM basis
}
XC = {"pbe": {"PBE": {}}, "pbesol": {"PBE": {"PARAMETRIZATION": "PBESOL"}}, "lda": {"PADE": {}}}
D3 = {"d3": "DFTD3", "d3bj": "DFTD3(BJ)"}
D3_REFERENCE = {"pbesol": "PBESOL", "hse06": "HSE06", "pbe0": "PBE0"}


def split_overrides(overrides: dict[str, Any] | None) -> tuple[dict, dict, dict]:
    """Split user overrides into (protocol values, options, raw CP2K sections).

    Upper-case keys (``FORCE_EVAL``, ``GLOBAL``, ``MOTION``) are raw CP2K input; lower-case
    keys are protocol values (``cutoff_eV``, ``kspacing``, ...) or :data:`OPTIONS`.
    """
    proto_keys = set(get_protocol("fast", "cp2k"))
    proto, options, raw = {}, {}, {}
    for key, value in (overrides or {}).items():
        if key.isupper():
            raw[key] = value
        elif key in OPTIONS:
            options[key] = value
        elif key in proto_keys:
            proto[key] = value
        else:
            raise InputError(
                f"unknown CP2K setting '{key}'",
                f"use a protocol key ({', '.join(sorted(proto_keys))}), an option "
                f"({', '.join(OPTIONS)}) or an upper-case CP2K section such as FORCE_EVAL",
            )
    return proto, {**OPTIONS, **options}, _upper_keys(raw)


def _upper_keys(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k.upper(): _upper_keys(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_upper_keys(v) for v in tree]
    return tree


def _scf(proto: dict, opts: dict, kgrid: list[int] | None) -> dict[str, Any]:
    eps = opts["eps_scf"] or float(np.clip(10 * proto["scf_conv_eV"] / Hartree, 1e-8, 1e-5))
    scf: dict[str, Any] = {"EPS_SCF": eps, "MAX_SCF": int(opts["max_scf"]), "SCF_GUESS": "ATOMIC"}
    method = str(opts["scf"]).lower()
    if method == "ot":
        if kgrid is not None:
            raise InputError(
                "CP2K's OT solver cannot be used with k-points",
                "use scf: diag, or kpoints: gamma with a supercell",
            )
        scf["OT"] = {"MINIMIZER": "DIIS", "PRECONDITIONER": "FULL_SINGLE_INVERSE"}
        scf["OUTER_SCF"] = {"MAX_SCF": 10, "EPS_SCF": eps}
        return scf
    if method != "diag":
        raise InputError(f"unknown SCF method '{opts['scf']}'", "use diag or ot")
    temperature = max(float(proto.get("smearing_eV") or 0.0) / kB, 1.0)
    scf["ADDED_MOS"] = int(opts["n_unoccupied"])
    scf["DIAGONALIZATION"] = {"ALGORITHM": "STANDARD"}
    scf["MIXING"] = {"METHOD": "BROYDEN_MIXING", "ALPHA": 0.2, "NBUFFER": 8}
    scf["SMEAR"] = {"METHOD": "FERMI_DIRAC", "ELECTRONIC_TEMPERATURE": round(temperature, 3)}
    return scf


def _xc(proto: dict) -> dict[str, Any]:
    xc = str(proto["xc"]).lower()
    if xc not in XC and not is_hybrid(xc):
        raise InputError(
            f"exchange-correlation '{proto['xc']}' is not set up for CP2K",
            "use pbe, pbesol, lda, hse06 or pbe0",
        )
    section: dict[str, Any] = {"XC_FUNCTIONAL": XC.get(xc, XC["pbe"])}
    disp = proto.get("dispersion")
    if disp:
        if str(disp).lower() not in D3:
            raise InputError(f"unknown dispersion '{disp}' for CP2K", "use d3, d3bj or null")
        section["VDW_POTENTIAL"] = {
            "POTENTIAL_TYPE": "PAIR_POTENTIAL",
            "PAIR_POTENTIAL": {
                "TYPE": D3[str(disp).lower()],
                "PARAMETER_FILE_NAME": "dftd3.dat",
                "REFERENCE_FUNCTIONAL": D3_REFERENCE.get(xc, "PBE"),
            },
        }
    return section


def _prints(natoms: int, opts: dict, calc_type: str, gamma: bool) -> dict[str, Any]:
    prints: dict[str, Any] = {
        "MO": {"EIGENVALUES": True, "OCCUPATION_NUMBERS": True, "EACH": {"QS_SCF": 0}}
    }
    if calc_type == "static" and gamma and opts["projections"]:
        # diagonalisation already holds ADDED_MOS empty states (NLUMO 0 prints them all);
        # OT has none, so CP2K computes NLUMO of them for the PDOS
        ot = str(opts["scf"]).lower() == "ot"
        prints["PDOS"] = {
            "NLUMO": int(opts["n_unoccupied"]) if ot else 0,
            "COMPONENTS": False,
            "LDOS": [{"LIST": i + 1} for i in range(natoms)],
        }
    return prints


def _motion(proto: dict, opts: dict, natoms: int, defect: bool) -> dict[str, Any]:
    fmax = opts["fmax"] or proto["fmax_defect" if defect else "fmax_bulk"]
    return {
        "GEO_OPT": {
            "OPTIMIZER": opts["optimizer"] or ("LBFGS" if natoms > 300 else "BFGS"),
            "MAX_ITER": int(proto["max_steps"]),
            "MAX_FORCE": fmax / FORCE_AU,
            "RMS_FORCE": 2 * fmax / 3 / FORCE_AU,
            "MAX_DR": 1.0,  # force criteria only (as ASE's fmax)
            "RMS_DR": 1.0,
        },
        "PRINT": {"RESTART OFF": {}, "RESTART_HISTORY OFF": {}},
    }


def cp2k_input_set(
    atoms: Any,
    calc_type: str,
    protocol: str,
    potentials: dict[str, Any],
    *,
    charge: float = 0.0,
    multiplicity: int | None = None,
    defect: bool = False,
    overrides: dict[str, Any] | None = None,
    relax_cell: bool = False,
) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """Build the CP2K parameters for ``atoms`` (see the module docstring for the steps).

    Parameters
    ----------
    atoms
        ASE Atoms; ``pbc`` all True is a periodic crystal, all False a cluster.
    calc_type
        ``static`` (energy, forces, MOs, projections) or ``relax`` (GEO_OPT).
    protocol
        Protocol name (``fast``, ``standard``, ``seed``).
    potentials
        element -> :class:`perovflow.engines.pseudos.Pseudo` (``name`` = GTH potential).
    overrides
        User settings; they win over the protocol and over automatic choices.
    relax_cell
        ``relax`` only: CELL_OPT (positions and cell, analytical stress) to the protocol's
        ``press_kbar`` within ``press_conv_kbar``, instead of GEO_OPT.

    Returns
    -------
    params, placed_atoms, info
        The CP2K input tree, the atoms as CP2K will see them (clusters centred in a box)
        and a summary (k-point grid, basis names, periodicity, electrons).
    """
    proto, opts, raw = _settings(protocol, overrides)
    xc = str(proto["xc"]).lower()
    periodic = periodicity(atoms)
    placed, cell, poisson = cell_and_poisson(atoms, periodic, opts)
    kgrid = cp2k_kgrid(placed, periodic, proto, opts)
    check_gamma(xc, kgrid)
    kinds, basis, files = _kinds(placed, potentials, proto)
    nelect, mult = _electrons(placed, potentials, charge, multiplicity)
    dft = _dft(proto, opts, protocol, files, charge, mult, kgrid, poisson, calc_type, len(placed))
    params = _tree(calc_type, opts, dft, cell, kinds)
    if calc_type == "relax":
        _add_relaxation(params, proto, opts, len(placed), defect, periodic, relax_cell)
    info = {"periodic": periodic, "kpoints": kgrid or [1, 1, 1], "basis": basis}
    info |= {"nelect": nelect, "multiplicity": mult, "protocol_values": proto}
    if is_hybrid(xc):
        info["hybrid"] = apply_hybrid(params, xc, placed, periodic, kgrid, opts)
    return merge(params, raw), placed, info


def _settings(protocol: str, overrides: dict[str, Any] | None) -> tuple[dict, dict, dict]:
    """Return (protocol values with the user's on top, options, raw CP2K sections).

    An unset ``scf`` option becomes OT for hybrids (density mixing does not mix exact
    exchange) and diagonalisation otherwise.
    """
    proto_user, opts, raw = split_overrides(overrides)
    proto = merge(get_protocol(protocol, "cp2k"), proto_user)
    if opts["scf"] is None:
        opts["scf"] = "ot" if is_hybrid(proto["xc"]) else "diag"
    return proto, opts, raw


def _kinds(placed: Any, potentials: dict[str, Any], proto: dict) -> tuple[dict, dict, list]:
    """Return (``KIND <el>`` sections, element -> basis name, basis files) of the elements."""
    kinds, basis, files = {}, {}, basis_files(proto)
    for el in sorted(set(placed.get_chemical_symbols())):
        pot = potentials[el]
        basis[el] = basis_for(el, proto["basis"], pot.valence, files)
        kinds[f"KIND {el}"] = {"BASIS_SET": basis[el], "POTENTIAL": pot.name}
    return kinds, basis, files


def _electrons(
    placed: Any, potentials: dict[str, Any], charge: float, multiplicity: int | None
) -> tuple[float, int]:
    """Return (valence electrons less ``charge``, spin multiplicity: the user's or 1 / 2)."""
    nelect = sum(potentials[s].valence or 0 for s in placed.get_chemical_symbols()) - charge
    return nelect, multiplicity or (2 if round(nelect) % 2 else 1)


def _dft(
    proto: dict,
    opts: dict,
    protocol: str,
    files: list,
    charge: float,
    mult: int,
    kgrid: list[int] | None,
    poisson: dict,
    calc_type: str,
    natoms: int,
) -> dict[str, Any]:
    """Return the ``FORCE_EVAL -> DFT`` section (Poisson solver of clusters, k-points)."""
    dft = {
        "BASIS_SET_FILE_NAME": files[0] if len(files) == 1 else [[f] for f in files],
        "POTENTIAL_FILE_NAME": _data_path("potential_file"),
        "CHARGE": integer_charge(charge),
        "MULTIPLICITY": mult,
        "UKS": mult > 1,
        "MGRID": {"CUTOFF": proto["cutoff_eV"] / Rydberg, "REL_CUTOFF": proto["rel_cutoff_eV"] / Rydberg},
        "QS": {"METHOD": "GPW", "EPS_DEFAULT": opts["eps_default"] or (1e-10 if protocol == "fast" else 1e-12)},
        "SCF": _scf(proto, opts, kgrid),
        "XC": _xc(proto),
        "PRINT": _prints(natoms, opts, calc_type, kgrid is None),
    }  # fmt: skip
    if poisson:
        dft["POISSON"] = poisson
    if kgrid is not None:
        dft["KPOINTS"] = _kpoints_section(kgrid)
    return dft


def _kpoints_section(kgrid: list[int]) -> dict[str, Any]:
    """Return the ``DFT -> KPOINTS`` section of a Γ-centred grid.

    PARALLEL_GROUP_SIZE 0: all ranks work on every k-point, so CP2K's I/O rank prints the MO
    eigenvalues of all of them (with k-point groups it prints its own group's only).
    """
    return {
        "SCHEME": "GENERAL",
        "KPOINT": gamma_centred_kpoints(kgrid),
        "PARALLEL_GROUP_SIZE": 0,
    }


def _tree(calc_type: str, opts: dict, dft: dict, cell: dict, kinds: dict) -> dict[str, Any]:
    """Return the input tree: ``GLOBAL`` and ``FORCE_EVAL`` (DFT, cell, coordinates, kinds)."""
    subsys = {
        "CELL": cell,
        "TOPOLOGY": {"COORD_FILE_NAME": COORD_FILE, "COORD_FILE_FORMAT": "XYZ", "CONN_FILE_FORMAT": "OFF"},
        **kinds,
    }  # fmt: skip
    return {
        "GLOBAL": _global(calc_type, opts),
        "FORCE_EVAL": {"METHOD": "QUICKSTEP", "DFT": dft, "SUBSYS": subsys, "PRINT": {"FORCES ON": {}}},
    }  # fmt: skip


def _global(calc_type: str, opts: dict) -> dict[str, Any]:
    """Return the ``GLOBAL`` section; WALLTIME leaves CP2K a margin to write its restart."""
    glob: dict[str, Any] = {
        "PROJECT": PROJECT,
        "RUN_TYPE": "GEO_OPT" if calc_type == "relax" else "ENERGY_FORCE",
        "PRINT_LEVEL": "MEDIUM",
    }
    if opts["walltime_s"]:
        glob["WALLTIME"] = int(max(60, 0.95 * float(opts["walltime_s"]) - 60))
    return glob


def _add_relaxation(
    params: dict, proto: dict, opts: dict, natoms: int, defect: bool, periodic: bool, cell: bool
) -> None:
    """Add the ``MOTION`` of a relaxation to ``params``: GEO_OPT, or CELL_OPT if ``cell``."""
    motion = _motion(proto, opts, natoms, defect)
    if cell:
        from perovflow.engines.cp2k.cell import cell_opt

        cell_opt(params, proto, motion, periodic)
    else:
        params["MOTION"] = motion
