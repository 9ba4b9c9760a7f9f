"""Configuration-coordinate diagram of a defect between two charge states (any engine).

The flow is atomate2's ``ConfigurationCoordinateMaker`` made charge-safe: it reuses
atomate2's own jobs, ``spawn_energy_curve_calcs`` (the statics along the line between the
two relaxed geometries, reading ``output.output.energy``/``output.structure`` of each static)
and ``get_ccd_documents`` (atomate2's ``CCDDocument``), and differs in two places, both
because atomate2's maker, given perovflow's makers, computes the wrong thing:

* atomate2 carries the charge on the Structure (``Structure.set_charge``), but
  ``Structure.interpolate`` (pymatgen) drops it, so every distorted static would run at the
  makers' own charge. Here each charge state has its own relax/static maker
  (``charge=q``, ``defect=True``).
* atomate2 passes the relax folder as ``prev_dir`` to the statics; for perovflow's QE
  statics ``prev_dir`` means "restart this same calculation", which would take the relaxed
  geometry instead of the distorted one. Here the statics get no ``prev_dir``.

Steps: (optional ML pre-relax) -> relax in charge q1 and q2 -> statics of each charge along
the line (fractions ``distortions``; 0 and 1 are required) -> :func:`ccd_report` (ΔQ,
absorption/emission, Stokes shift, d_FC, ħΩ: :mod:`perovflow.analysis.ccd`).
An ML potential ignores the charge (both relaxations end in the same geometry, ΔQ = 0):
it serves as the pre-relax, not as the engine of the curves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobflow import Flow, Maker, job

from perovflow.workflows.common import relax_chain, with_fields

#: fractions of ΔQ: small ones for the ħΩ fit, 1 for the vertical transitions
DEFAULT_DISTORTIONS = (-0.2, -0.1, 0.0, 0.1, 0.2, 1.0)


@dataclass
class CCDMaker(Maker):
    """Relax two charge states and compute the energy curves between their minima.

    Attributes
    ----------
    relax_maker, static_maker
        Engine makers (QE, CP2K); copied with ``charge=q`` and ``defect=True`` per state.
    prerelax_maker
        Optional pre-relax of the shared start (e.g. the ML potential); None skips it.
    distortions
        Fractions of the way to the other minimum (must contain 0 and 1).
    reservoir
        Electron reservoir: ``"vbm"`` (the VBM of the more positive state's relaxed cell),
        ``"cbm"`` (the CBM of the same cell) or a number in eV.
    fit_window
        Largest ``|distortion|`` used in the ħΩ fits.
    """

    name: str = "ccd"
    relax_maker: Maker | None = None
    static_maker: Maker | None = None
    prerelax_maker: Maker | None = None
    distortions: tuple[float, ...] = DEFAULT_DISTORTIONS
    reservoir: str | float = "vbm"
    fit_window: float = 0.25

    def make(self, structure: Any, charge_state1: int, charge_state2: int) -> Flow:
        """Build the flow for the defect cell ``structure`` between the two charges."""
        from atomate2.common.jobs.defect import get_ccd_documents, spawn_energy_curve_calcs

        labels = {"study": self.name}
        dist = sorted(self.distortions)  # atomate2 returns the points sorted
        jobs, relaxed, relax_docs = [], [], []
        start = structure
        if self.prerelax_maker is not None:
            pre, start = relax_chain(structure, None, self.prerelax_maker, "ccd", labels)
            jobs += pre
        for q in (charge_state1, charge_state2):
            lab = {**labels, "charge": q}
            maker = with_fields(self.relax_maker, charge=q, defect=True)
            chain, out = relax_chain(start, maker, None, f"q={q:+d}", lab)
            jobs += chain
            relaxed.append(out)
            relax_docs.append(chain[-1].output)
        curves = []
        for i, q in enumerate((charge_state1, charge_state2)):
            static = with_fields(self.static_maker, charge=q, defect=True,
                                 name=f"q={q:+d} ccd static", labels={**labels, "charge": q})  # fmt: skip
            spawn = spawn_energy_curve_calcs(
                relaxed[i], relaxed[1 - i], distortions=dist, static_maker=static,
                prev_dir=None, add_name=f"q={q:+d}",
            )  # fmt: skip
            spawn.name = f"q={q:+d} energy curve"
            curves.append(spawn)
        index = min(range(len(dist)), key=lambda k: abs(dist[k]))
        document = get_ccd_documents(curves[0].output, curves[1].output, undistorted_index=index)
        document.name = "atomate2 ccd document"
        more_positive = 0 if charge_state1 >= charge_state2 else 1
        report = ccd_report(
            curves[0].output, curves[1].output, [charge_state1, charge_state2], dist,
            self.reservoir, relax_docs[more_positive], self.fit_window,
        )  # fmt: skip
        report.name = "ccd report"
        jobs += [*curves, document, report]
        return Flow(jobs, output={"ccd": report.output, "document": document.output},
                    name=self.name)  # fmt: skip


def reservoir_energy(reservoir: str | float, relax_doc: Any) -> float:
    """μ in eV: a number, or the ``vbm``/``cbm`` of the more positive state's relaxed cell."""
    from perovflow.errors import InputError

    if not isinstance(reservoir, str):
        return float(reservoir)
    electronic = getattr(relax_doc, "electronic", None) or {}
    if not isinstance(electronic, dict):
        electronic = electronic.model_dump()
    value = electronic.get(f"{reservoir.lower()}_eV")
    if value is None:
        raise InputError(
            f"the relaxed cell has no {reservoir} (an engine without eigenvalues?)",
            "give the reservoir in eV (reservoir: 1.23)",
        )
    return float(value)


@job
def ccd_report(
    curve1: list[dict[str, Any]],
    curve2: list[dict[str, Any]],
    charges: list[int],
    distortions: list[float],
    reservoir: str | float,
    relax_doc: Any,
    fit_window: float,
) -> dict[str, Any]:
    """The CCD numbers (:func:`perovflow.analysis.ccd.ccd_from_points`) and ``ccd.png``."""
    from perovflow.analysis.ccd import ccd_from_points, write_ccd_report

    mu = reservoir_energy(reservoir, relax_doc)
    result = ccd_from_points(curve1, curve2, (charges[0], charges[1]), distortions, mu, fit_window)
    result["provenance"] = {
        f"q={q:+d}": [p["dir_name"] for p in points]
        for q, points in zip(charges, (curve1, curve2), strict=True)
    }
    paths = write_ccd_report(result, Path.cwd(), f"CCD q={charges[0]:+d} <-> q={charges[1]:+d}")
    result["figure"] = str((Path.cwd() / "ccd.png").resolve())
    result["report"] = {k: str(v) for k, v in paths.items()}
    return result


def flow_from_study(study: Any, makers: dict[str, Any], structure: Any) -> Flow:
    """CCD flow of a study file: the first distinct vacancy of the (super)cell."""
    from perovflow.structures.defects import enumerate_vacancies
    from perovflow.structures.supercells import make_supercell

    spec = study.section()
    cell = make_supercell(structure, spec.supercell) if spec.supercell else structure.copy()
    site = enumerate_vacancies(cell, spec.vacancy_element)[0]
    cell.remove_sites([site.index])
    maker = CCDMaker(
        name=study.name, relax_maker=makers["relax"], static_maker=makers["static"],
        prerelax_maker=makers["prerelax"], distortions=tuple(spec.distortions),
        reservoir=spec.reservoir,
    )  # fmt: skip
    q1, q2 = spec.charge_states
    flow = maker.make(cell, q1, q2)
    flow.metadata = {**(flow.metadata or {}), "defect": site.label}
    return flow
