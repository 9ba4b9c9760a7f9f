"""CompositionStudy: band structure and PDOS across a mixed-halide series, e.g. FASnI(3-z)Br(z).

Seed 004: FASnI3 derivatives with z = 0, 0.5, 1, 3 (band gap widens with Br).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobflow import Flow, Maker, job

from perovflow.workflows.common import relax_chain, run_maker
from perovflow.workflows.vacancy import _doc, _out


def series(structure: Any, host: str, guest: str, z_values: list[float]) -> list[tuple[float, Any]]:
    """One structure per z: ``z / 3`` of the ``host`` halide sites replaced by ``guest``."""
    from perovflow.structures.variants import mix_halides

    per_fu = sum(1 for s in structure if s.specie.symbol == host)
    n_fu = max(1, round(per_fu / 3))
    return [
        (z, mix_halides(structure, host, guest, z / 3 if n_fu else 0.0).structure) for z in z_values
    ]


@dataclass
class CompositionFlowMaker(Maker):
    """Composition study (any code with bands/DOS makers).

    Steps, for every z: (1) build the mixed-halide cell (symmetry-distinct arrangement,
    smallest supercell for the fraction); (2) optional ML pre-relax and relax; (3) scf;
    (4) bands along the high-symmetry path and PDOS on the scf density; (5) table of gap
    (and where it sits) and halide PDOS shares vs z.
    """

    name: str = "composition study"
    relax_maker: Maker | None = None
    static_maker: Maker | None = None
    bands_maker: Maker | None = None
    dos_maker: Maker | None = None
    prerelax_maker: Maker | None = None
    host: str = "I"
    guest: str = "Br"
    z: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 3.0])

    def make(self, structure: Any) -> Flow:
        """Build the flow for the parent structure (z = 0)."""
        jobs, points = [], []
        for z, cell in series(structure, self.host, self.guest, self.z):
            tag = f"z={z:g}"
            labels = {"study": self.name, "z": z}
            chain, relaxed = relax_chain(
                cell, self.relax_maker, self.prerelax_maker, tag, labels, cell=True
            )
            jobs += chain
            point = {
                "z": z,
                "formula": cell.composition.reduced_formula,
                "relax": _out(chain[-1]) if chain else None,
            }
            if self.static_maker is not None:
                scf = run_maker(self.static_maker, relaxed, f"{tag} scf", labels)
                jobs.append(scf)
                point["scf"] = scf.output
                for kind, maker in (("bands", self.bands_maker), ("dos", self.dos_maker)):
                    if maker is not None:
                        step = run_maker(
                            maker,
                            scf.output.structure,
                            f"{tag} {kind}",
                            labels,
                            prev_dir=scf.output.dir_name,
                        )
                        jobs.append(step)
                        point[kind] = step.output
            points.append(point)
        table = composition_table(points)
        table.name = "composition table"
        return Flow([*jobs, table], output=table.output, name=self.name)


@job
def composition_table(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Gap vs z: from the bands run (path), else the scf edges; halide shares at the edges."""
    rows = []
    for p in points:
        scf, bands, dos = _doc(p.get("scf")), _doc(p.get("bands")), _doc(p.get("dos"))
        dos = dos or scf  # an scf that projected its own states (no separate DOS step)
        row: dict[str, Any] = {"z": p["z"], "formula": p["formula"]}
        if scf:
            row["scf_gap_eV"] = (scf.get("electronic") or {}).get("band_gap_eV")
        if bands:
            try:
                from perovflow.analysis.bands import analyze_bands

                res = analyze_bands(f"{bands['dir_name']}/espresso.pwo")
                row.update(
                    gap_eV=res.band_gap_eV, direct=res.is_direct, direct_gap_eV=res.direct_gap_eV
                )
            except Exception as exc:  # keep the table, say why a row lacks the path gap
                row["bands_error"] = str(exc).splitlines()[0]
        if dos and dos.get("projections"):
            from perovflow.analysis.pdos import compute_pdos
            from perovflow.workflows.vacancy import projections_of

            row["pdos"] = compute_pdos(projections_of(dos, scf)).summary()
        rows.append(row)
    return {"result_type": "composition", "rows": rows}


def flow_from_study(study: Any, makers: dict[str, Any], structure: Any) -> Flow:
    """Composition flow of a study file (see :class:`CompositionFlowMaker`)."""
    spec = study.section()
    maker = CompositionFlowMaker(
        name=study.name, relax_maker=makers["relax"], static_maker=makers["static"],
        bands_maker=makers["bands"], dos_maker=makers["dos"], prerelax_maker=makers["prerelax"],
        host=spec.host, guest=spec.guest, z=list(spec.z),
    )  # fmt: skip
    return maker.make(structure)
