"""GTH-PBE potentials from CP2K's data: parse ``GTH_POTENTIALS``, pick the one that matches the
MOLOPT basis (its valence ``q``), and write it in ABINIT's HGH format for QE's ``readgth``.

Used by :mod:`perovflow.engines.pseudos` (the families for QE and CP2K).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from perovflow.errors import EngineError

DEFAULT_BASIS = "DZVP-MOLOPT-SR-GTH"


@dataclass(frozen=True)
class GTHPotential:
    """One entry of a CP2K ``GTH_POTENTIALS`` file (Hartree atomic units).

    Attributes
    ----------
    element, name
        Symbol and potential name (e.g. ``Pb``, ``GTH-PBE-q4``).
    aliases
        Other names on the header line (``GTH-PBE`` marks CP2K's default).
    nelec
        Valence electrons per angular momentum (s, p, d, f).
    rloc, cexp
        Local part: radius and polynomial coefficients C1..C4.
    projectors
        One ``(r_l, h)`` per angular momentum l = 0, 1, ...; ``h`` is the full symmetric
        coupling matrix (list of rows).
    """

    element: str
    name: str
    aliases: tuple[str, ...]
    nelec: tuple[int, ...]
    rloc: float
    cexp: tuple[float, ...]
    projectors: tuple[tuple[float, tuple[tuple[float, ...], ...]], ...]

    @property
    def valence(self) -> int:
        """Number of valence electrons (the ``q`` of the name)."""
        return sum(self.nelec)


def _is_number(token: str) -> bool:
    return re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eEdD][-+]?\d+)?", token) is not None


def _split_entries(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Split a GTH file into (header tokens, numeric rows) per potential."""
    entries: list[tuple[list[str], list[list[str]]]] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = line.split()
        if not _is_number(tokens[0]):
            entries.append((tokens, []))
        elif entries:
            entries[-1][1].append(tokens)
    return entries


def _parse_entry(header: list[str], rows: list[list[str]]) -> GTHPotential | None:
    """Build one potential; None for formats this reader does not handle (NLCC, SOC)."""
    try:
        nelec = tuple(int(t) for t in rows[0])
        stream = [float(t.replace("D", "E").replace("d", "e")) for row in rows[1:] for t in row]
        rloc, nexp = stream[0], int(stream[1])
        cexp = tuple(stream[2 : 2 + nexp])
        pos = 2 + nexp
        nprj = int(stream[pos])
        pos += 1
        projectors = []
        for _ in range(nprj):
            r_l, n = stream[pos], int(stream[pos + 1])
            pos += 2
            h = [[0.0] * n for _ in range(n)]
            for i in range(n):
                for j in range(i, n):
                    h[i][j] = h[j][i] = stream[pos]
                    pos += 1
            projectors.append((r_l, tuple(tuple(row) for row in h)))
        if pos != len(stream):  # SOC k-matrices or NLCC blocks: not a plain GTH entry
            return None
    except (IndexError, ValueError):
        return None
    return GTHPotential(
        element=header[0],
        name=header[1],
        aliases=tuple(header[2:]),
        nelec=nelec,
        rloc=rloc,
        cexp=cexp,
        projectors=tuple(projectors),
    )


@cache
def _read_potentials(path: str, mtime: float) -> dict[str, list[GTHPotential]]:
    out: dict[str, list[GTHPotential]] = {}
    for header, rows in _split_entries(Path(path).read_text(errors="replace")):
        pot = _parse_entry(header, rows)
        if pot is not None:
            out.setdefault(pot.element.lower(), []).append(pot)
    return out


def read_gth_potentials(path: Path) -> dict[str, list[GTHPotential]]:
    """Parse a CP2K GTH potential file; keys are lower-case element symbols."""
    path = Path(path)
    if not path.is_file():
        raise EngineError(
            f"GTH potential file {path} not found",
            "install cp2k-data or set cp2k.data_dir / cp2k.potential_file in the settings",
        )
    return _read_potentials(str(path), path.stat().st_mtime)


@cache
def _basis_valences(path: str, mtime: float, basis: str) -> dict[str, set[int]]:
    """Valences q for which ``<basis>-q<N>`` exists, per lower-case element."""
    pattern = re.compile(rf"^\s*([A-Z][a-z]?)\s+.*\b{re.escape(basis)}-q(\d+)\b")
    out: dict[str, set[int]] = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        m = pattern.match(line)
        if m:
            out.setdefault(m.group(1).lower(), set()).add(int(m.group(2)))
    return out


def choose_gth(element: str, xc: str = "PBE", basis: str = DEFAULT_BASIS) -> GTHPotential:
    """Pick the GTH potential of ``element`` that CP2K would pair with ``basis``.

    Preference: the ``q`` for which ``<basis>-q<N>`` exists in the basis file; otherwise
    CP2K's default (the ``GTH-<XC>`` alias); otherwise the smallest ``q``.
    """
    from perovflow.settings import get_settings

    cp2k = get_settings().cp2k
    pot_file = data_file(cp2k.data_dir, cp2k.potential_file)
    prefix = f"GTH-{xc.upper()}-q"
    candidates = [
        p
        for p in read_gth_potentials(pot_file).get(element.lower(), [])
        if p.name.upper().startswith(prefix.upper())
    ]
    if not candidates:
        raise EngineError(
            f"no pseudopotential for element '{element}': no {prefix}N entry in {pot_file}",
            "check the element symbol, or put UPF files in a folder and set qe.pseudo_dir",
        )
    basis_file = data_file(cp2k.data_dir, cp2k.basis_file)
    wanted: set[int] = set()
    if basis_file.is_file():
        wanted = _basis_valences(str(basis_file), basis_file.stat().st_mtime, basis).get(
            element.lower(), set()
        )
    for pot in sorted(candidates, key=lambda p: p.valence):
        if pot.valence in wanted:
            return pot
    default = [p for p in candidates if f"GTH-{xc.upper()}" in p.aliases]
    return default[0] if default else min(candidates, key=lambda p: p.valence)


def data_file(data_dir: Path, name: str) -> Path:
    """``name`` itself when absolute, else ``name`` inside ``data_dir`` (cp2k-data's folder)."""
    path = Path(name).expanduser()
    return path if path.is_absolute() else Path(data_dir).expanduser() / path


def to_abinit_hgh(pot: GTHPotential, znucl: int, pspxc: int = 11) -> str:
    """Write ``pot`` in ABINIT's HGH format (pspcod 10), the format QE's ``readgth`` reads.

    ``lmax`` is the highest projector channel; ``lloc`` is set above it (QE ignores it for
    GTH but uses ``lmax == lloc`` to mean "no projectors"). Spin-orbit k-matrices are zeros.
    Caveat (measured): QE 6.7's analytic GTH code effectively drops f projectors (l = 3,
    e.g. Cs q9): a CsBr cell gives the energy of the UPF *without* its f channel to 1e-7 Ry,
    1.8 mRy above the full UPF. The UPF route is therefore the default.
    """
    nproj = len(pot.projectors)
    lmax = max(nproj - 1, 0)
    lloc = lmax + 1 if nproj else 0
    lines = [
        f"{pot.element} {pot.name} (CP2K GTH_POTENTIALS) converted by perovflow",
        f"{znucl} {pot.valence} 240101    zatom, zion, pspdat",
        f"10 {pspxc} {lmax} {lloc} 2001 0    pspcod, pspxc, lmax, lloc, mmax, r2well",
        f"{pot.rloc:.10f} {len(pot.cexp)} " + " ".join(f"{c:.10f}" for c in pot.cexp),
        f"{nproj}    nnonloc",
    ]
    channels = pot.projectors or ((0.0, ()),)
    for ll, (r_l, h) in enumerate(channels):
        n = len(h)
        first = " ".join(f"{h[0][j]:.10f}" for j in range(n)) if n else ""
        lines.append(f"{r_l:.10f} {n} {first}".rstrip())
        lines += [" ".join(f"{h[i][j]:.10f}" for j in range(i, n)) for i in range(1, n)]
        if ll > 0:  # spin-orbit coupling matrix, absent from scalar-relativistic GTH
            lines += [" ".join("0.0" for _ in range(i, n)) for i in range(n)]
    return "\n".join(lines) + "\n"
