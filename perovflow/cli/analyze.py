"""CLI: ``perovflow analyze bands|pdos|ipr|neb|alignment|formation`` and ``perovflow report``.

``PATH_OR_ID`` is a calculation folder (or output file) whose code is detected from its
files, or the uuid of a task in the results store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from perovflow.cli._common import JsonOpt, emit, table
from perovflow.errors import InputError

analyze_app = typer.Typer(
    help="Analyse a calculation: bands, PDOS, IPR, NEB barriers, band alignment, defect "
    "formation energies.",
    no_args_is_help=True,
)

RefArg = Annotated[str, typer.Argument(help="Calculation folder/output file, or a stored task id.")]
PlotOpt = Annotated[Path | None, typer.Option("--plot", help="Write the plot to this PNG file.")]


def _kv(data: dict[str, Any]) -> str:
    return "\n".join(
        f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}"
        for k, v in data.items()
        if not isinstance(v, list | dict)
    )


def _shell_groups(proj: Any, shell: str) -> dict[str, list[int]]:
    """``"x,y,z:R"`` (fractional centre, radius in Å) -> shell/rest groups."""
    from perovflow.analysis.groups import shell_groups

    try:
        centre, radius = shell.split(":")
        xyz = [float(v) for v in centre.split(",")]
        if len(xyz) != 3:
            raise ValueError
        return shell_groups(proj.get_structure(), xyz, float(radius))
    except ValueError:
        raise InputError(
            f"--shell {shell!r} is not x,y,z:R", "write e.g. --shell 0.5,0.5,0.5:4.0"
        ) from None


def _groups(proj: Any, groups: str, shell: str | None) -> Any:
    return _shell_groups(proj, shell) if shell else groups


def _window(emin: float | None, emax: float | None, default: tuple[float, float] | None):
    if emin is None and emax is None:
        return default
    lo = emin if emin is not None else -1e9
    hi = emax if emax is not None else 1e9
    return (lo, hi)


@analyze_app.command("bands")
def bands(
    ref: RefArg,
    fit_points: Annotated[int, typer.Option(help="k-points per side in the mass fit.")] = 3,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Band gap (direct/indirect, at which k-points), VBM/CBM and effective masses."""
    from perovflow.analysis.bands import analyze_bands, plot_bands
    from perovflow.analysis.sources import load_bands_source

    src = load_bands_source(ref)
    res = analyze_bands(src, fit_points=fit_points)
    if plot:
        plot_bands(src, plot)
    data = res.to_dict()

    def human(d: dict[str, Any]) -> str:
        masses = table(d["effective_masses"], ["carrier", "kpoint", "direction", "band", "mass_me"])
        return _kv(d) + f"\nvbm_k: {d['vbm_kpoint']}\ncbm_k: {d['cbm_kpoint']}\n{masses}"

    emit(data, as_json, human)


@analyze_app.command("pdos")
def pdos(
    ref: RefArg,
    by: Annotated[
        str, typer.Option(help="element, orbital, element_orbital, domain or prop:NAME.")
    ] = "element",
    shell: Annotated[
        str | None, typer.Option(help="Defect shell 'x,y,z:R' (fractional, Å).")
    ] = None,
    sigma: Annotated[float, typer.Option(help="Gaussian broadening (eV).")] = 0.1,
    reference: Annotated[str, typer.Option(help="vbm, fermi, none or an energy in eV.")] = "vbm",
    emin: Annotated[float, typer.Option(help="Grid start relative to the reference (eV).")] = -6.0,
    emax: Annotated[float, typer.Option(help="Grid end relative to the reference (eV).")] = 6.0,
    step: Annotated[float, typer.Option(help="Grid spacing (eV).")] = 0.01,
    data: Annotated[bool, typer.Option("--data", help="Include the curves in --json.")] = False,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Projected DOS by element, orbital, domain or defect shell (Gaussian broadening)."""
    from perovflow.analysis.pdos import compute_pdos, plot_pdos
    from perovflow.analysis.sources import load_projections

    proj = load_projections(ref)
    try:
        ref_value: str | float = float(reference)
    except ValueError:
        ref_value = reference
    res = compute_pdos(
        proj,
        by=_groups(proj, by, shell),
        sigma=sigma,
        reference=ref_value,
        window=(emin, emax),
        step=step,
    )
    if plot:
        plot_pdos(res, plot)
    out = res.to_dict() if data else res.summary()
    emit(
        out,
        as_json,
        lambda d: (
            _kv(d) + "\n" + "\n".join(f"  {k}: {v:.3f}" for k, v in d.get("integrals", {}).items())
        ),
    )


@analyze_app.command("ipr")
def ipr(
    ref: RefArg,
    threshold: Annotated[
        float | None,
        typer.Option(help="IPR above which a state is localized [default: max(0.03, 8/N atoms)]."),
    ] = None,
    groups: Annotated[
        str, typer.Option(help="element, domain or prop:NAME (plot colours).")
    ] = "element",
    shell: Annotated[str | None, typer.Option(help="Defect shell 'x,y,z:R' as the groups.")] = None,
    top: Annotated[int, typer.Option(help="Top-weight atoms listed per state.")] = 3,
    emin: Annotated[float | None, typer.Option(help="Window start, E - VBM (eV).")] = None,
    emax: Annotated[float | None, typer.Option(help="Window end, E - VBM (eV).")] = None,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Inverse participation ratio of every state; localized states and their atoms."""
    from perovflow.analysis.ipr import analyze_ipr
    from perovflow.analysis.plots import plot_ipr
    from perovflow.analysis.sources import load_projections

    proj = load_projections(ref)
    res = analyze_ipr(
        proj,
        threshold=threshold,
        groups=_groups(proj, groups, shell),
        top=top,
        energy_window=_window(emin, emax, None),
    )
    if plot:
        plot_ipr(res, plot)

    def human(d: dict[str, Any]) -> str:
        rows = [
            {
                "E-VBM": s["e_minus_vbm_eV"],
                "ipr": s["ipr"],
                "occ": s["occupation"],
                "top atoms": " ".join(
                    f"{a['element']}{a['index']}:{a['fraction']:.2f}" for a in s["top_atoms"]
                ),
            }
            for s in d["localized_states"]
        ]
        return _kv(d) + "\nlocalized states:\n" + table(rows)

    emit(res.to_dict() if as_json else res.summary(), as_json, human)


@analyze_app.command("neb")
def neb(
    ref: RefArg,
    nimages: Annotated[int | None, typer.Option(help="Images per band (last N frames).")] = None,
    fit: Annotated[bool, typer.Option(help="Barrier from the force-informed spline.")] = True,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Barriers forward/back (eV, kcal/mol), TS image and spline profile of an NEB run."""
    from perovflow.analysis.neb import analyze_neb, plot_neb
    from perovflow.analysis.sources import load_neb_source

    res = analyze_neb(load_neb_source(ref), nimages=nimages, fit=fit)
    if plot:
        plot_neb(res, plot)
    emit(res.to_dict() if as_json else res.summary(), as_json, _kv)


@analyze_app.command("alignment")
def alignment(
    ref: RefArg,
    groups: Annotated[
        str, typer.Option(help="domain or prop:NAME (the domain site property).")
    ] = "domain",
    pair: Annotated[
        str | None, typer.Option(help="Two domain names 'A,B' (default: first two).")
    ] = None,
    threshold: Annotated[
        float, typer.Option(help="Edge = PDOS above this fraction of its max.")
    ] = 0.05,
    sigma: Annotated[float, typer.Option(help="Gaussian broadening (eV).")] = 0.05,
    tolerance: Annotated[float, typer.Option(help="Offsets below it (eV) are 'quasi'.")] = 0.1,
    as_json: JsonOpt = False,
) -> None:
    """Band alignment (type I / II / quasi-type II) of two domains from domain-projected DOS."""
    from perovflow.analysis.alignment import align_domains
    from perovflow.analysis.sources import load_projections

    names = tuple(pair.split(",")) if pair else None
    res = align_domains(load_projections(ref), groups, names, threshold, sigma, tolerance)
    emit(res.summary(), as_json, lambda d: _kv(d) + f"\nedges: {d['edges']}")


@analyze_app.command("formation")
def formation(
    spec: Annotated[
        Path, typer.Argument(help="YAML/JSON file naming bulk, defects, phases (see docs).")
    ],
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Formation energy vs Fermi level, chemical-potential limits, transition levels."""
    from perovflow.analysis.collect import run_formation_spec
    from perovflow.analysis.formation_report import plot_formation

    res = run_formation_spec(spec)
    if plot:
        plot_formation(res, plot)

    def human(d: dict[str, Any]) -> str:
        lines = [f"defect: {d['defect']}  gap: {d['band_gap_eV']:.3f} eV"]
        lines += [
            f"  eps({t['q1']:+d}/{t['q2']:+d}) = {t['level_eV']:.3f} eV"
            for t in d["transition_levels"]
        ]
        plain = {lim["name"]: lim for lim in (d.get("uncorrected") or {}).get("limits", [])}
        for lim in d["limits"]:
            lines.append(f"  {lim['name']}: E_f(E_F=VBM) = {lim['formation_at_vbm_eV']}")
            if d["meta"].get("correction") and lim["name"] in plain:
                bare = plain[lim["name"]]["formation_at_vbm_eV"]
                lines.append(f"    uncorrected: {bare}")
        return "\n".join(lines)

    emit(res.summary(), as_json, human)


def register(app: typer.Typer) -> None:
    """Register ``analyze`` and ``report`` on ``app``."""
    app.add_typer(analyze_app, name="analyze")

    @app.command("report")
    def report(
        study: Annotated[
            str, typer.Argument(help="Study name/label in the store, or a folder of calc dirs.")
        ],
        out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")] = Path("report"),
        as_json: JsonOpt = False,
    ) -> None:
        """Write a Markdown + HTML report (plots, results table, settings, provenance)."""
        from perovflow.analysis.collect import study_answer, study_sections
        from perovflow.analysis.report import write_report

        sections = study_sections(study, out / "figures")
        paths = write_report(
            sections, out, title=f"perovflow report: {study}", answer=study_answer(sections)
        )
        emit({k: str(v) for k, v in paths.items()} | {"sections": len(sections)}, as_json)
