"""Dielectric tensors with Quantum ESPRESSO: scf, then ph.x at Γ (``epsil``, ``trans``).

Steps of :class:`QEDielectricMaker`: an scf of the (relaxed) insulating cell -> ph.x at Γ
with ``epsil=.true.`` (ε∞ and the Born charges) and ``trans=.true.`` (the Γ force
constants, in the ``fildyn`` file) -> ε0 from Born charges and Γ modes with both acoustic
sum rules (:func:`perovflow.engines.dielectric.ionic_dielectric`) -> the same ε0 from
``dynmat.x`` (``asr='simple'``, ``lperm``), QE's own post-processor, as an independent
check.

The ph.x output is read with ASE's :func:`ase.io.espresso.read_espresso_ph`; the force
constants and masses come from the ``fildyn`` file, whose Γ block
(:func:`read_gamma_dynmat`) ASE does not read. ph.x has no DFT-D3 dynamical matrices
("not yet available" in QE 6.7), so the scf drops ``vdw_corr`` unless the user sets it:
relax the cell with D3 first, then compute the response of that cell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jobflow import job

from perovflow.engines.dielectric import (
    AMU_ME,
    BOHR_A,
    DielectricDocument,
    born_sum_rule,
    ionic_dielectric,
    is_isotropic,
    tensor_list,
)
from perovflow.engines.qe.jobs import BaseQEMaker
from perovflow.errors import EngineError, InputError

PH_IN, PH_OUT, PH_ERR = "ph.in", "ph.out", "ph.err"
DYNMAT_IN, DYNMAT_OUT = "dynmat.in", "dynmat.out"
FILDYN = "dyn.G"
AMU_RY = AMU_ME / 2  # QE's mass unit in the fildyn file (Rydberg units, mₑ = 1/2)


@dataclass
class QEDielectricMaker(BaseQEMaker):
    """ε∞, Born charges, Γ phonons and ε0 of an insulating cell (pw.x scf + ph.x at Γ).

    ``input_set_overrides`` go to the scf (as for :class:`QEStaticMaker`);
    ``ph_overrides`` to ph.x's ``&inputph`` (they win over the defaults below).
    ``phonons=False`` computes ε∞ only (no ``trans``: no Born charges, no ε0).
    ``cross_check`` runs ``dynmat.x`` on the force constants for an independent ε0.
    """

    name: str = "qe dielectric"
    phonons: bool = True
    cross_check: bool = True
    tr2_ph: float = 1.0e-14
    ph_overrides: dict[str, Any] = field(default_factory=dict)
    calc_type = "dielectric"  # for ``plan``; the scf itself is a QEStaticMaker

    @job
    def make(self, structure: Any, prev_dir: str | None = None) -> DielectricDocument:
        """Run scf + ph.x on ``structure`` (pymatgen Structure or ASE Atoms)."""
        return run_dielectric(self, structure, Path.cwd())


def run_dielectric(maker: QEDielectricMaker, structure: Any, directory: Path) -> DielectricDocument:
    """Everything ``make`` does (see the module docstring for the steps)."""
    from perovflow.engines.qe.jobs import QEStaticMaker, run_qe_task

    _refuse_unfit(structure, maker.charge)
    directory = Path(directory)
    scf_maker = QEStaticMaker(
        name=f"{maker.name} scf", protocol=maker.protocol, spin=False, soc=maker.soc,
        input_set_overrides=scf_overrides(maker.input_set_overrides),
        max_attempts=maker.max_attempts, walltime_s=maker.walltime_s, labels=maker.labels,
    )  # fmt: skip
    scf = run_qe_task(scf_maker, structure, None, directory)
    system = scf.input_parameters.get("input_data", {}).get("system", {})
    if system.get("occupations", "fixed") != "fixed" or not scf.electronic.band_gap_eV:
        raise InputError(
            f"{scf.formula} ran with {system.get('occupations')} occupations or no gap: "
            "ph.x has no dielectric tensor for metals or smeared cells",
            "compute the tensor of the pristine, closed-shell bulk insulator",
        )
    control = scf.input_parameters["input_data"]["control"]
    run_ph(directory, ph_settings(maker, control))
    return dielectric_document(maker, directory, scf)


#: scf settings of a linear-response run: no D3 (ph.x has none) and a ground state converged
#: far below the protocols' total-energy thresholds (measured on CsBr: with ``fast``'s
#: 7e-7 Ry the Γ force constants moved by 7 % between two ph.x runs)
SCF_FOR_PH = {"system.vdw_corr": "none", "electrons.conv_thr": 1.0e-12}


def scf_overrides(user: dict[str, Any] | None) -> dict[str, Any]:
    """The scf's overrides: :data:`SCF_FOR_PH`, then the user's (the user wins)."""
    from perovflow.engines.protocols import merge
    from perovflow.engines.qe.inputs import nest_overrides

    return merge(nest_overrides(SCF_FOR_PH), nest_overrides(user))


def _refuse_unfit(structure: Any, charge: float) -> None:
    from perovflow.engines.qe.inputs import is_metallic
    from perovflow.structures.io import to_atoms

    symbols = to_atoms(structure).get_chemical_symbols()
    if abs(charge) > 1e-8:
        raise InputError(
            f"a dielectric tensor of a charged cell (charge {charge:g}) is not defined",
            "compute it for the neutral bulk cell (charge 0)",
        )
    if is_metallic(symbols):
        raise InputError(
            f"{''.join(sorted(set(symbols)))} is a metal: it has no dielectric tensor",
            "compute the tensor of an insulator (e.g. the host crystal)",
        )


def ph_settings(maker: QEDielectricMaker, control: dict[str, Any]) -> dict[str, Any]:
    """``&inputph`` for ph.x at Γ: defaults, then the maker's ``ph_overrides``."""
    inputph = {
        "prefix": control.get("prefix", "pwscf"),
        "outdir": control.get("outdir", "./"),
        "fildyn": FILDYN,
        "tr2_ph": float(maker.tr2_ph),
        "epsil": True,
        "trans": bool(maker.phonons),
    }
    return {**inputph, **{k.lower(): v for k, v in maker.ph_overrides.items()}}


def run_ph(directory: Path, inputph: dict[str, Any]) -> None:
    """Write ``ph.in`` (ASE's writer) and run ph.x at Γ in ``directory``.

    Raises
    ------
    EngineError
        If ph.x stops without ``JOB DONE`` (its own error message is quoted).
    """
    from ase.io.espresso import write_espresso_ph

    from perovflow.engines.process import run_command
    from perovflow.settings import get_settings

    settings = get_settings()
    with open(Path(directory) / PH_IN, "w") as fd:
        write_espresso_ph(fd, input_data={"inputph": inputph}, qpts=(0.0, 0.0, 0.0))
    argv = [*settings.parallel_for("qe").command(settings.qe.ph_cmd), "-in", PH_IN]
    result = run_command(argv, directory, PH_OUT, PH_ERR)
    if result.returncode != 0 or "JOB DONE" not in result.tail(40):
        raise EngineError(
            f"ph.x failed in {directory}: {_ph_error(directory) or result.tail(4)}",
            "check the scf (insulator, fixed occupations, no DFT-D3) and ph.out",
        )


def _ph_error(directory: Path) -> str | None:
    from perovflow.engines.qe.failures import error_message, read_or_empty

    message, _ = error_message(
        read_or_empty(Path(directory) / PH_OUT), read_or_empty(Path(directory) / "CRASH"), ""
    )
    return message


def read_gamma_dynmat(path: Path) -> dict[str, Any]:
    """Masses (amu), positions (alat units), alat (bohr) and Γ force constants (Ry/bohr²).

    Reads the header and the first ``Dynamical Matrix in cartesian axes`` block of a ph.x
    ``fildyn`` file; the force-constant matrix is (3N, 3N), atom-major.
    """
    lines = Path(path).read_text().splitlines()
    head = lines[2].split()
    ntyp, nat, alat = int(head[0]), int(head[1]), float(head[3])
    first = 7 if int(head[2]) == 0 else 3  # ibrav 0: "Basis vectors" and three lines first
    masses_by_type = {}
    for line in lines[first : first + ntyp]:
        parts = line.split("'")
        masses_by_type[int(parts[0])] = float(parts[2]) / AMU_RY
    atoms = [line.split() for line in lines[first + ntyp : first + ntyp + nat]]
    masses = np.array([masses_by_type[int(a[1])] for a in atoms])
    start = next(i for i, t in enumerate(lines) if "Dynamical  Matrix in cartesian axes" in t)
    fc = np.zeros((3 * nat, 3 * nat))
    i = start + 1
    while i < len(lines) and not re.match(r"^\s*(Dielectric|Effective|Diagonalizing)", lines[i]):
        pair = lines[i].split()
        if len(pair) == 2 and all(p.isdigit() for p in pair):
            a, b = int(pair[0]) - 1, int(pair[1]) - 1
            block = [[float(x) for x in lines[i + k].split()[0::2]] for k in (1, 2, 3)]
            fc[3 * a : 3 * a + 3, 3 * b : 3 * b + 3] = block
            i += 4
        else:
            i += 1
    return {"masses_amu": masses, "alat_bohr": alat, "force_constants_ry": fc}


def run_dynmat(directory: Path) -> np.ndarray:
    """ε0 from ``dynmat.x`` (``asr='simple'``, ``lperm``) on ``fildyn``: the 3x3 tensor it
    prints after "with zone-center polar mode contributions"."""
    from perovflow.engines.process import run_command
    from perovflow.settings import get_settings

    (Path(directory) / DYNMAT_IN).write_text(
        f"&input fildyn='{FILDYN}', asr='simple', lperm=.true., filout='dynmat.modes' /\n"
    )
    result = run_command([get_settings().qe.dynmat_cmd], directory, DYNMAT_OUT, "dynmat.err",
                         stdin=DYNMAT_IN)  # fmt: skip
    text = (Path(directory) / DYNMAT_OUT).read_text(errors="replace")
    mark = text.find("with zone-center polar mode contributions")
    if result.returncode != 0 or mark < 0:
        raise EngineError(
            f"dynmat.x gave no ionic dielectric tensor in {directory}: {result.tail(4)}",
            "run without the cross-check (cross_check=False) or check dynmat.out",
        )
    rows = text[mark:].splitlines()[1:4]
    return np.array([[float(x) for x in r.split()] for r in rows])


def dielectric_document(maker: QEDielectricMaker, directory: Path, scf: Any) -> DielectricDocument:
    """Read ph.x's output and fildyn; compute the ionic term; cross-check with dynmat.x."""
    from ase.io.espresso import read_espresso_ph

    gamma = read_espresso_ph(str(Path(directory) / PH_OUT)).get(1, {})
    if "dieltensor" not in gamma:
        raise EngineError(
            f"ph.x printed no dielectric tensor in {Path(directory) / PH_OUT}",
            "check ph.out (an insulator, epsil=.true.)",
        )
    eps_inf = np.asarray(gamma["dieltensor"])
    fields: dict[str, Any] = {}
    if maker.phonons:
        dyn = read_gamma_dynmat(Path(directory) / FILDYN)
        born = np.array([np.asarray(z) for z in gamma["borneffcharge"]])
        volume_bohr3 = _volume_A3(scf) / BOHR_A**3
        eps_ion, freqs = ionic_dielectric(
            born, dyn["force_constants_ry"] / 2, dyn["masses_amu"] * AMU_ME, volume_bohr3
        )
        eps0 = eps_inf + eps_ion
        fields = {
            "born_charges": [tensor_list(z) for z in born_sum_rule(born)],
            "phonon_frequencies_cm": np.round(freqs, 3).tolist(),
            "epsilon_ionic": tensor_list(eps_ion),
            "epsilon_static": tensor_list(eps0),
        }
        if maker.cross_check:
            fields["epsilon_static_check"] = tensor_list(run_dynmat(directory))
    eps_all = [eps_inf] + ([np.asarray(fields["epsilon_static"])] if fields else [])
    return DielectricDocument(
        code="qe",
        method="DFPT (ph.x epsil" + (" + trans at Γ)" if maker.phonons else ")"),
        formula=scf.formula,
        volume_A3=round(_volume_A3(scf), 6),
        epsilon_electronic=tensor_list(eps_inf),
        isotropic=all(is_isotropic(e) for e in eps_all),
        structure=scf.structure,
        dir_name=str(Path(directory).resolve()),
        calc_hash=scf.calc_hash,
        **fields,
    )


def _volume_A3(doc: Any) -> float:
    return float(abs(np.linalg.det(np.asarray(doc.structure["lattice"]["matrix"]))))
