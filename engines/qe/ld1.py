"""Norm-conserving pseudopotentials from QE's ``ld1.x``, generated offline.

Two families share this machinery: ``ld1-fr-pbe`` (fully relativistic, for spin–orbit runs;
:data:`~perovflow.engines.qe.ld1_recipes.RECIPES`) and ``ld1-sr-pbe`` (scalar-relativistic
``rel=1``, one channel per l; :data:`~perovflow.engines.qe.ld1_recipes.SR_RECIPES`, the pw.x
potentials that replace a GTH one too hard for plane waves). For each recipe two ld1.x runs:

1. **generation** (``iswitch=3``, the recipe's ``rel``): FR (Dirac atom) writes
   ``<El>.fr.upf`` (``has_so="true"``, one projector per (l, j), pseudo-atomic orbitals with
   their j, so pw.x ``lspinorb`` and projwfc.x's (j, m_j) projections work); SR writes
   ``<El>.sr.upf``;
2. **test** (``iswitch=2`` on that UPF, i.e. its separable form, the one pw.x uses):
   frozen-core transferability on the recipe's ionised/promoted configurations, and the
   spherical-Bessel-basis diagonalisation (box 30 bohr, up to ``BESSEL_ECUT_RY``), which
   reveals ghost states unambiguously (ld1.x documentation).

:func:`verify` turns both outputs into a report and the pass/fail verdict with the
tolerances below; a potential that fails is never cached. A potential is cached by
:func:`pseudo_file` in the folder its caller gives (UPF + JSON report, atomic writes), keyed
by a fingerprint of the ld1.x inputs, and generated on first use (about a second per element).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from perovflow.engines.qe.ld1_recipes import RECIPES, SR_RECIPES, Recipe
from perovflow.errors import EngineError

FAMILY = "ld1-fr-pbe"
SR_FAMILY = "ld1-sr-pbe"
_KIND = {2: (FAMILY, "fr", "fully relativistic"), 1: (SR_FAMILY, "sr", "scalar-relativistic")}
BESSEL_ECUT_RY = (20.0, 40.0, 80.0)
TOL_EIG_RY = 0.002  # reference configuration: |e_AE - e_PS| of each pseudised level
TOL_BESSEL_RY = 0.005  # Bessel basis at the top cutoff reproduces the AE valence levels to
TOL_BESSEL_REL = 0.04  # max(this, this fraction of |e_AE|): semicore levels (Pb 5d, Ag 4d,
# Na 2p) converge in ld1.x's Bessel box to 1-3.5 % of the radial solver's value, the same for
# every rc tried, while the radial frozen-core tests reproduce them to < 1 mRy
LOGDER_R_BOHR = 3.0  # radius of the log-derivative comparison (beyond every rc)
LOGDER_WINDOW_RY = (-1.0, 0.5)  # valence and low conduction energies
TOL_LOGDER_RAD = 0.6  # max |atan(D_AE) - atan(D_PS)| (mod π) per channel in the window
LOGDER_CHANNELS = {  # by rel: the Dirac atom's (l, j) channels, or the scalar (l) ones
    2: ("s", "p1/2", "p3/2", "d3/2", "d5/2", "f5/2", "f7/2"),
    1: ("s", "p", "d"),
}
_CHANNEL_NAME = {(0, 0.5): "s", (1, 0.5): "p1/2", (1, 1.5): "p3/2", (2, 1.5): "d3/2",
                 (2, 2.5): "d5/2", (3, 2.5): "f5/2", (3, 3.5): "f7/2",
                 (0, 0.0): "s", (1, 0.0): "p", (2, 0.0): "d"}  # fmt: skip
GHOST_MARGIN_RY = 0.1  # no state this far below the lowest AE valence level: a ghost
TOL_TRANSFER_RY = 0.005  # frozen-core excitation energies: |ΔE_AE - ΔE_PS| <= max(this,
TOL_TRANSFER_REL = 0.02  # ... this fraction of ΔE_AE)
_STATE = re.compile(
    r"^\s*\d+\s+(\d)\s+(?:([\d.]+)\s+)?(\d[SPDF])\s+\d\(\s*([\d.]+)\)\s+(-?[\d.]+)\s+(-?[\d.]+)"
)


def ld1_command() -> str:
    """ld1.x next to the configured pw.x (same QE installation), else ld1.x on PATH."""
    from perovflow.settings import get_settings

    pw = Path(get_settings().qe.pw_cmd.split()[0])
    beside = pw.with_name("ld1.x")
    return str(beside) if pw.parent != Path(".") and beside.is_file() else "ld1.x"


def _zed(element: str) -> int:
    from pymatgen.core import Element

    return Element(element).Z


def generation_input(recipe: Recipe, upf_name: str) -> str:
    """ld1.x input that generates the potential of ``recipe`` (FR or SR) into ``upf_name``."""
    nlcc = ".true." if recipe.nlcc else ".false."
    rcore = f", rcore={recipe.rcore}" if recipe.rcore else ""
    cards = [str(len(recipe.channels))] + [
        f"{c.label}  {c.n_ps}  {c.l}  {c.occupation:.2f}  {c.energy_ry:.4f}  {c.rc:.3f}  "
        f"{c.rc:.3f}" + (f"  {c.j:.1f}" if recipe.rel == 2 else "")
        for c in recipe.channels
    ]
    valence = " ".join(_valence_labels(recipe))
    return (
        f"&input\n  title='{recipe.element}', zed={_zed(recipe.element)}., rel={recipe.rel},\n"
        f"  config='{recipe.config}', iswitch=3, dft='PBE'\n/\n"
        f"&inputp\n  pseudotype=2, file_pseudopw='{upf_name}', lloc={recipe.lloc}, rcloc={recipe.rcloc},\n"
        f"  tm=.true., nlcc={nlcc}{rcore}, author='perovflow ld1_recipes'\n/\n"
        + "\n".join(cards)
        + f"\n&test\n  configts(1)='{valence}'\n/\n"
    )


def _valence_labels(recipe: Recipe) -> list[str]:
    """The valence part of ``config`` (the unscreening configuration, e.g. Cs 5s5p + 6s)."""
    first = recipe.channels[0].label.lower()
    tokens = recipe.config.split()
    start = next(i for i, t in enumerate(tokens) if t.startswith(first))
    return tokens[start:]


def testing_input(recipe: Recipe, upf_name: str) -> str:
    """ld1.x input that tests ``upf_name``: transferability and the Bessel-basis ghost test."""
    confs = [" ".join(_valence_labels(recipe)), *recipe.tests]
    lo, hi = BESSEL_ECUT_RY[0], BESSEL_ECUT_RY[-1]
    step = BESSEL_ECUT_RY[1] - BESSEL_ECUT_RY[0]
    lines = ",\n".join(f"  configts({i})='{c}'" for i, c in enumerate(confs, start=1))
    return (
        f"&input\n  title='{recipe.element}', zed={_zed(recipe.element)}., rel={recipe.rel},\n"
        f"  config='{recipe.config}', iswitch=2, dft='PBE', prefix='test',\n"
        f"  rlderiv={LOGDER_R_BOHR}, eminld={LOGDER_WINDOW_RY[0]}, emaxld={LOGDER_WINDOW_RY[1]},"
        f" deld=0.01, nld={len(LOGDER_CHANNELS[recipe.rel])}\n/\n"
        f"&test\n  file_pseudo='{upf_name}', nconf={len(confs)}, frozen_core=.true.,\n"
        f"  ecutmin={lo}, ecutmax={hi}, decut={step},\n{lines}\n/\n"
    )


def parse_bessel(text: str) -> dict[float, dict[tuple[int, float], list[float]]]:
    """Bessel-basis eigenvalues (Ry) of the first configuration: ``{cutoff: {(l, j): [E...]}}``.

    ld1.x repeats the test for every configuration; only the first (reference) one is read.
    Scalar-relativistic output has no J (``E(L=1) =``): j is 0 there.
    """
    out: dict[float, dict[tuple[int, float], list[float]]] = {}
    cutoff = None
    for line in text.splitlines():
        if "End of Bessel function test" in line:
            break
        m = re.match(r"\s*Cutoff \(Ry\)\s*:\s*([\d.]+)", line)
        if m:
            cutoff = float(m.group(1))
            out[cutoff] = {}
            continue
        m = re.match(r"\s*E\(L=(\d)(?:,J=([\d.]+))?\)\s*=(.*)", line)
        if m and cutoff is not None:
            values = [float(v) for v in re.findall(r"(-?[\d.]+)\s*Ry", m.group(3))]
            out[cutoff][(int(m.group(1)), float(m.group(2) or 0.0))] = values
    return out


def parse_tests(text: str) -> list[dict[str, Any]]:
    """Blocks of ld1.x's ``.test`` file: levels (l, j, label, occ, e_AE, e_PS) and ΔE's.

    Scalar-relativistic files have no j column: j is 0 there.
    """
    blocks: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        m = _STATE.match(line)
        if m:
            if current is None:
                current = {"levels": []}
                blocks.append(current)
            ll, j, label, occ, e_ae, e_ps = m.groups()
            current["levels"].append(
                {"l": int(ll), "j": float(j or 0.0), "label": label, "occ": float(occ),
                 "e_ae": float(e_ae), "e_ps": float(e_ps)}
            )  # fmt: skip
            continue
        m = re.search(r"dEtot_ae\s*=\s*(-?[\d.]+)", line)
        if m and current is not None:
            current["dE_ae"] = float(m.group(1))
        m = re.search(r"dEtot_ps\s*=\s*(-?[\d.]+)", line)
        if m and current is not None:
            current["dE_ps"] = float(m.group(1))
        if not line.strip():
            current = None
    return blocks


def logder_errors(ae_text: str, ps_text: str, rel: int = 2) -> dict[str, float]:
    """Max |atan D_AE - atan D_PS| (mod π, so a pole shifted across the grid is no jump)."""
    import numpy as np

    ae, ps = np.loadtxt(ae_text.splitlines(), ndmin=2), np.loadtxt(ps_text.splitlines(), ndmin=2)
    diff = np.arctan(ae[:, 1:]) - np.arctan(ps[:, 1:])
    diff = (diff + np.pi / 2) % np.pi - np.pi / 2
    return {ch: float(np.abs(diff[:, i]).max()) for i, ch in enumerate(LOGDER_CHANNELS[rel])}


def verify(
    recipe: Recipe, tests_text: str, output_text: str, logder: dict[str, float] | None = None
) -> dict[str, Any]:
    """Check a generated potential; returns the report with ``passed`` and ``problems``."""
    blocks = parse_tests(tests_text)
    bessel = parse_bessel(output_text)
    problems: list[str] = []
    if not blocks or not bessel:
        return {"passed": False, "problems": ["ld1.x test output incomplete"]}
    ref = blocks[0]["levels"]
    for lev in ref:
        if abs(lev["e_ae"] - lev["e_ps"]) > TOL_EIG_RY:
            problems.append(
                f"{lev['label']} j={lev['j']}: e_PS-e_AE {lev['e_ps'] - lev['e_ae']:+.4f} Ry"
            )
    transfer = []
    for conf, block in zip(recipe.tests, blocks[1:], strict=False):
        d_ae, d_ps = block.get("dE_ae"), block.get("dE_ps")
        if d_ae is None or d_ps is None:
            problems.append(f"test '{conf}' did not run")
            continue
        err = d_ps - d_ae
        transfer.append({"config": conf, "dE_ae_Ry": d_ae, "error_Ry": err})
        if abs(err) > max(TOL_TRANSFER_RY, TOL_TRANSFER_REL * abs(d_ae)):
            problems.append(f"test '{conf}': ΔE error {err:+.4f} Ry of {d_ae:.4f}")
    if len(blocks) - 1 < len(recipe.tests):
        problems.append(f"only {len(blocks) - 1} of {len(recipe.tests)} test configurations ran")
    problems += _ghost_problems(ref, bessel)
    with_projector = {_CHANNEL_NAME[(c.l, c.j)] for c in recipe.channels}
    warnings = []
    for ch, err in (logder or {}).items():
        if err > TOL_LOGDER_RAD:
            msg = f"log derivative {ch} off by {err:.2f} rad at r={LOGDER_R_BOHR}"
            (problems if ch in with_projector else warnings).append(msg)
    top = max(bessel)
    return {
        "passed": not problems,
        "problems": problems,
        "reference_levels": ref,
        "transferability": transfer,
        "bessel_top_cutoff_Ry": top,
        "bessel": {f"l={ll} j={j}": v for (ll, j), v in bessel[top].items()},
        "bessel_converged_cutoff_Ry": _converged_cutoff(bessel),
        "logder_max_error_rad": logder,
        "warnings": warnings,  # channels that only feel the local potential (no projector)
    }


def _ghost_problems(
    ref: list[dict[str, Any]], bessel: dict[float, dict[tuple[int, float], list[float]]]
) -> list[str]:
    """Ghosts: Bessel levels below the AE valence spectrum; valence levels not reproduced."""
    top = bessel[max(bessel)]
    floor = min(lev["e_ae"] for lev in ref) - GHOST_MARGIN_RY
    problems = []
    for (ll, j), values in top.items():
        ghosts = [e for e in values if e < floor]
        if ghosts:
            problems.append(f"ghost state in l={ll} j={j}: {ghosts[0]:.3f} Ry (floor {floor:.3f})")
        wanted = sorted(lev["e_ae"] for lev in ref if lev["l"] == ll and abs(lev["j"] - j) < 0.1)
        for k, e_ae in enumerate(wanted):
            tol = max(TOL_BESSEL_RY, TOL_BESSEL_REL * abs(e_ae))
            if k >= len(values) or abs(values[k] - e_ae) > tol:
                got = values[k] if k < len(values) else float("nan")
                problems.append(f"l={ll} j={j} level {k + 1}: Bessel {got:.4f} vs AE {e_ae:.4f} Ry")
    return problems


def _converged_cutoff(bessel: dict[float, dict[tuple[int, float], list[float]]]) -> float:
    """Lowest Bessel cutoff whose lowest levels are within 5 mRy of the top cutoff's."""
    top = bessel[max(bessel)]
    for cut in sorted(bessel):
        if all(abs(bessel[cut][k][0] - v[0]) <= 0.005 for k, v in top.items() if k in bessel[cut]):
            return cut
    return max(bessel)


def fingerprint(recipe: Recipe) -> str:
    """Short hash of both ld1.x inputs (changes when a recipe or the test set changes)."""
    text = generation_input(recipe, "x.upf") + testing_input(recipe, "x.upf")
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _recipe(element: str, rel: int) -> Recipe:
    """The FR (``rel=2``) or SR (``rel=1``) recipe of ``element``, or a one-line error."""
    recipes = RECIPES if rel == 2 else SR_RECIPES
    if element not in recipes:
        raise EngineError(
            f"no {_KIND[rel][2]} ld1.x recipe for {element} (perovflow's {_KIND[rel][0]} "
            f"family has {', '.join(sorted(recipes))})",
            f"point qe.pseudo_dir at a folder with a {_KIND[rel][2]} UPF for {element}"
            + (" (e.g. pslibrary rel-pbe)" if rel == 2 else ""),
        )
    return recipes[element]


def _run_stages(recipe: Recipe, work: Path, upf: str) -> None:
    """ld1.x generation then test run in ``work`` (one-line error if generation fails)."""
    from perovflow.engines.process import run_command

    cmd = [*ld1_command().split()]
    for stage, text in (
        ("gen", generation_input(recipe, upf)),
        ("test", testing_input(recipe, upf)),
    ):
        (work / f"{stage}.in").write_text(text)
        result = run_command(cmd, work, f"{stage}.out", f"{stage}.err", stdin=f"{stage}.in",
                             walltime_s=120, env={"OMP_NUM_THREADS": "1"})  # fmt: skip
        if stage == "gen" and (result.returncode != 0 or not (work / upf).is_file()):
            raise EngineError(
                f"ld1.x could not generate the {recipe.element} potential: {result.tail(4)}",
                "check the QE installation (ld1.x) or set qe.pseudo_dir to a UPF folder",
            )


def generate(element: str, work: Path, rel: int = 2) -> tuple[Path, dict[str, Any]]:
    """Generate and test the potential of ``element`` in ``work``; (UPF path, report).

    ``rel``: 2 the fully relativistic recipe (:data:`RECIPES`), 1 the scalar-relativistic one
    (:data:`SR_RECIPES`).
    """
    recipe = _recipe(element, rel)
    upf = f"{element}.{_KIND[rel][1]}.upf"
    _run_stages(recipe, work, upf)
    tests, ae, ps = work / "test.test", work / "test1.dlog", work / "test1ps.dlog"
    logder = (
        logder_errors(ae.read_text(), ps.read_text(), rel)
        if ae.is_file() and ps.is_file()
        else None
    )
    report = verify(
        recipe,
        tests.read_text() if tests.is_file() else "",
        (work / "test.out").read_text(errors="replace"),
        logder,
    )
    if logder is None:
        report["passed"] = False
        report["problems"].append("ld1.x wrote no logarithmic derivatives")
    return work / upf, report


def pseudo_file(element: str, cache_dir: Path, rel: int = 2) -> tuple[Path, dict[str, Any]]:
    """The cached, verified UPF of ``element`` (generated and tested on first use).

    ``cache_dir/<El>.fr.upf`` (``rel=2``) or ``<El>.sr.upf`` (``rel=1``), with the JSON
    report beside it; regenerated when the recipe's fingerprint changes.

    Raises
    ------
    EngineError
        No recipe for the element, ld1.x missing or failed, or the potential failed its tests.
    """
    family, suffix, kind = _KIND[rel]
    tag = fingerprint(_recipe(element, rel))
    upf, meta = cache_dir / f"{element}.{suffix}.upf", cache_dir / f"{element}.{suffix}.json"
    if upf.is_file() and meta.is_file():
        report = json.loads(meta.read_text())
        if report.get("fingerprint") == tag and report.get("passed"):
            return upf, report
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"perovflow-ld1-{element}-") as tmp:
        path, report = generate(element, Path(tmp), rel)
        if not report["passed"]:
            raise EngineError(
                f"the generated {kind} {element} potential failed its tests: "
                + "; ".join(report["problems"][:3]),
                "adjust its recipe in engines/qe/ld1_recipes.py or set qe.pseudo_dir",
            )
        report = {"fingerprint": tag, "element": element, "family": family, **report}
        _atomic_copy(path, upf)
    _atomic_text(meta, json.dumps(report, indent=1))
    return upf, report


def fr_pseudo_file(element: str, cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The fully relativistic potential of ``element`` (:func:`pseudo_file` with ``rel=2``)."""
    return pseudo_file(element, cache_dir, 2)


def sr_pseudo_file(element: str, cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The scalar-relativistic potential of ``element`` (:func:`pseudo_file` with ``rel=1``)."""
    return pseudo_file(element, cache_dir, 1)


def _atomic_copy(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
