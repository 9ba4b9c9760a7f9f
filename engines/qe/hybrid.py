"""Hybrid functionals for pw.x (HSE06, PBE0): the ``xc`` switch, Fock-grid cost controls, checks.

``xc`` comes from (highest first) the user's ``system.input_dft`` override, the maker field
``xc``, the protocol's common ``xc`` (``pbe`` | ``hse06`` | ``pbe0``). A hybrid run gets

* ``input_dft`` (``hse`` = HSE06, ω = 0.106 bohr⁻¹, 25 % short-range exchange; ``pbe0``);
* the Fock q grid ``nqx1-3``: the k grid along every lattice vector shorter than
  :data:`GAMMA_EXX_LENGTH_A`, 1 (Γ-only exchange) along longer ones; the maker field ``nqx``
  or the protocol's ``qe: nqx`` replace the automatic choice;
* ``ecutfock`` from the maker field ``ecutfock_eV`` or the protocol's ``qe: ecutfock_eV``
  (pw.x's own default otherwise: ``ecutrho``);
* pw.x 6.7's defaults for the rest: ACE on, ``exxdiv_treatment='gygi-baldereschi'`` with
  ``x_gamma_extrapolation`` (the q = 0 term of the Coulomb kernel; HSE's screened kernel is
  finite there, so the treatment only matters for PBE0). Users may override any of them.

The user's ``input_set_overrides`` are laid over these keys afterwards, so they win; the
finished input set is checked by :func:`check_hybrid`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from perovflow.errors import InputError

RY_EV = 13.605693122994
INPUT_DFT = {"hse06": "hse", "pbe0": "pbe0"}
"""perovflow ``xc`` name -> pw.x ``input_dft`` (``pbe``: none, pw.x reads it from the UPFs)."""
XC_NAMES = ("pbe", *INPUT_DFT)
HYBRID_DFT = ("hse", "pbe0", "b3lyp", "gaupbe", "pbe0-hjs", "x3lyp", "hf", "b3lyp-v1r")
GAMMA_EXX_LENGTH_A = 9.0
"""Lattice vectors at least this long (Å) get one q-point (Γ-only exchange) along them.

HSE's exchange kernel erfc(ωr)/r (ω = 0.106 bohr⁻¹) is down to erfc(0.9) = 20 % at half
such a cell (4.5 Å), so the image interactions Γ-only sampling misses are small (the
22-atom Cs4PbBr6 cell, 9.9 Å, qualifies); for PBE0 (unscreened) the Γ-only error is larger:
a user ``nqx`` replaces the choice.
"""


def resolve_xc(maker_xc: str | None, proto: dict[str, Any], user: dict[str, Any]) -> str:
    """The functional of the run: user ``input_dft`` > maker ``xc`` > protocol ``xc``.

    ``user`` is the nested override dict (:func:`perovflow.engines.qe.inputs.nest_overrides`);
    a user ``input_dft`` is returned as given (lower case), e.g. ``hse``.
    """
    system = user.get("input_data", {}).get("system", {})
    if "input_dft" in system:
        return str(system["input_dft"]).lower()
    xc = str(maker_xc if maker_xc is not None else proto.get("xc", "pbe")).lower()
    if xc not in XC_NAMES:
        raise InputError(f"unknown xc '{xc}'", f"use one of {', '.join(XC_NAMES)}")
    return xc


def is_hybrid(xc: str) -> bool:
    """Whether ``xc`` (perovflow name or pw.x ``input_dft``) has Fock exchange."""
    return xc in INPUT_DFT or xc in HYBRID_DFT


def fock_grid(cell: Any, kpts: Any, long_A: float = GAMMA_EXX_LENGTH_A) -> list[int]:
    """Automatic ``nqx1-3``: the k grid along short lattice vectors, 1 along long ones.

    ``kpts`` is the Monkhorst–Pack grid ([n1, n2, n3]; None or an explicit list count as
    Γ-only). Each nq divides its nk, as pw.x requires.
    """
    import numpy as np

    grid = list(kpts) if kpts is not None and np.ndim(kpts) == 1 else [1, 1, 1]
    lengths = np.linalg.norm(np.asarray(cell, dtype=float), axis=1)
    return [1 if length >= long_A else int(n) for length, n in zip(lengths, grid, strict=True)]


def hybrid_settings(
    xc: str, proto: dict[str, Any], cell: Any, kpts: Any, options: dict[str, Any]
) -> dict[str, Any]:
    """``system`` keys of a hybrid run (empty for a semilocal ``xc``).

    ``options`` holds the maker fields ``nqx`` (int or three ints) and ``ecutfock_eV``;
    None values fall back to the protocol's ``qe`` block, then to the automatic choice.
    """
    if not is_hybrid(xc):
        return {}
    out: dict[str, Any] = {"input_dft": INPUT_DFT.get(xc, xc)}
    nq = options.get("nqx") if options.get("nqx") is not None else proto.get("nqx")
    if nq is None:
        nq = fock_grid(cell, kpts)
    elif isinstance(nq, int):
        nq = [nq] * 3
    out.update({f"nqx{i + 1}": int(n) for i, n in enumerate(nq)})
    ecutfock = options.get("ecutfock_eV")
    ecutfock = ecutfock if ecutfock is not None else proto.get("ecutfock_eV")
    if ecutfock is not None:
        out["ecutfock"] = round(float(ecutfock) / RY_EV, 6)
    return out


def pseudo_type(path: str | Path) -> str:
    """``NC``, ``US`` or ``PAW`` from a UPF header (GTH/HGH files: ``NC``)."""
    path = Path(path)
    if path.suffix.lower() in (".gth", ".hgh"):
        return "NC"
    with open(path, errors="replace") as fh:
        head = fh.read(20000)
    m = re.search(r'pseudo_type\s*=\s*"\s*(\w+)', head) or re.search(
        r"^\s*(NC|SL|US|USPP|PAW)\s+Ultrasoft|^\s*(NC|SL|US|USPP|PAW)\b", head, re.M
    )
    if m is None:
        return "NC"
    kind = next(g for g in m.groups() if g).upper()
    return {"SL": "NC", "USPP": "US"}.get(kind, kind)


def check_hybrid(params: dict[str, Any], pseudos: dict[str, Any], calc_type: str) -> None:
    """One-line errors for what pw.x 6.7 cannot do with a hybrid (final input set).

    Raises
    ------
    InputError
        A non-scf hybrid step (DOS nscf), US/PAW potentials with non-collinear spin,
        ``ecutfock`` outside [``ecutwfc``, ``ecutrho``], a q grid that does not divide the
        k grid.
    """
    system = params["input_data"]["system"]
    if not is_hybrid(str(system.get("input_dft", "pbe")).lower()):
        return
    if calc_type == "dos":
        raise InputError(
            "pw.x 6.7 cannot run the non-self-consistent DOS step with a hybrid functional",
            "project the hybrid static itself (QEStaticMaker(projwfc=True)), or xc=pbe for DOS",
        )
    if system.get("noncolin"):
        soft = sorted(el for el, p in pseudos.items() if pseudo_type(p.path) != "NC")
        if soft:
            raise InputError(
                f"pw.x 6.7 has no non-collinear hybrid with US/PAW potentials ({', '.join(soft)})",
                "use norm-conserving potentials (ld1-fr-pbe) or switch SOC off",
            )
    wfc, rho = system["ecutwfc"], system.get("ecutrho", 4 * system["ecutwfc"])
    fock = system.get("ecutfock")
    if fock is not None and not wfc - 1e-9 <= fock <= rho + 1e-9:
        raise InputError(
            f"ecutfock {fock * RY_EV:.0f} eV lies outside [ecutwfc, ecutrho] = "
            f"[{wfc * RY_EV:.0f}, {rho * RY_EV:.0f}] eV",
            "choose ecutfock_eV between ecutwfc and ecutrho (pw.x refuses it otherwise)",
        )
    _check_divides(params.get("kpts"), [system.get(f"nqx{i}", 1) for i in (1, 2, 3)])


def _check_divides(kpts: Any, nq: list[int]) -> None:
    import numpy as np

    if kpts is None or np.ndim(kpts) != 1:
        if any(int(n) != 1 for n in nq):
            raise InputError(
                f"a Fock grid {nq} needs a Monkhorst-Pack k grid",
                "use nqx=1 with an explicit k list or Γ",
            )
        return
    if any(int(k) % int(n) for k, n in zip(kpts, nq, strict=True)):
        raise InputError(
            f"the Fock grid nqx {nq} does not divide the k grid {list(kpts)}",
            "choose each nqx as a divisor of the matching k-point count",
        )
