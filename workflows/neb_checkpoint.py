"""Checkpoint of an accelerated NEB: a day-long DFT band survives a stop, on any machine.

Replaying stored expensive calls (:class:`~perovflow.workflows.neb_calcs.CachedCalculator`)
restarts a run only where the optimisers retrace the same geometries. They do on the machine
that made them; on another CPU the ML potential's float32 arithmetic differs in the last
digits, a cheap relaxation amplifies that to ~2e-3 Å, and every later geometry misses the
store. The checkpoint holds the *state* instead, written atomically after the end points and
after every expensive round: the frozen end points, the band, the Δ-model's data, the trust
radius and the call counts. :func:`~perovflow.workflows.neb.accelerated_neb` continues from
it without repeating a call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from perovflow.workflows.neb_calcs import freeze
from perovflow.workflows.neb_gp import BandData, RefineState

VERSION = 1


def _array(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=float)


def _point(positions: Any, energy: float, forces: Any) -> dict[str, Any]:
    return {"positions": _array(positions).tolist(), "energy": float(energy),
            "forces": _array(forces).tolist()}  # fmt: skip


def _band_json(positions: list[Any], known: dict[int, tuple]) -> dict[str, Any]:
    """A band's images and their expensive data as JSON (inverse: :func:`_band`)."""
    return {"positions": [_array(p).tolist() for p in positions],
            "known": {str(i): _point(*v) for i, v in known.items()}}  # fmt: skip


def _band(data: dict[str, Any] | None) -> BandData | None:
    if data is None:
        return None
    return BandData([_array(p) for p in data["positions"]],
                    {int(i): _unpoint(v) for i, v in data["known"].items()})  # fmt: skip


def _unpoint(row: dict[str, Any]) -> tuple[np.ndarray, float, np.ndarray]:
    return _array(row["positions"]), float(row["energy"]), _array(row["forces"])


@dataclass
class NEBCheckpoint:
    """What an accelerated NEB needs to continue: end points, counts, the refinement state.

    ``ends`` are the frozen end points as (positions, energy, forces); ``refine`` is None
    until the first expensive round of the band has finished.
    """

    ends: list[tuple[np.ndarray, float, np.ndarray]]
    endpoints_converged: list[bool]
    endpoint_max_force: list[float]
    final_end_mapped: bool
    endpoint_calls: int
    band_calls: int = 0
    cheap_calls: int = 0
    refine: RefineState | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def end_atoms(self, template: Atoms) -> tuple[Atoms, Atoms]:
        """The two end points as frozen Atoms (species and cell of ``template``)."""
        if any(len(positions) != len(template) for positions, _, _ in self.ends):
            raise ValueError(
                f"the NEB checkpoint holds {len(self.ends[0][0])} atoms, this hop "
                f"{len(template)} (fix: another checkpoint path for another hop)"
            )
        out = []
        for positions, energy, forces in self.ends:
            atoms = template.copy()
            atoms.set_positions(positions)
            out.append(freeze(atoms, energy, forces))
        return out[0], out[1]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (lists of floats)."""
        data: dict[str, Any] = {
            "version": VERSION, "note": self.note,
            "ends": [_point(*end) for end in self.ends],
            "endpoints_converged": [bool(c) for c in self.endpoints_converged],
            "endpoint_max_force": [float(f) for f in self.endpoint_max_force],
            "final_end_mapped": bool(self.final_end_mapped),
            "endpoint_calls": self.endpoint_calls, "band_calls": self.band_calls,
            "cheap_calls": self.cheap_calls, "extra": self.extra, "refine": None,
        }  # fmt: skip
        if self.refine is not None:
            r = self.refine
            data["refine"] = {
                "outer": r.outer, "trust": r.trust, "best": None if np.isinf(r.best) else r.best,
                **_band_json(r.positions, r.known),
                "observations": [_point(*o) for o in r.observations], "history": r.history,
                "best_band": None if r.best_band is None
                else _band_json(r.best_band.positions, r.best_band.known),
            }  # fmt: skip
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NEBCheckpoint:
        """Inverse of :meth:`to_json`."""
        if data.get("version") != VERSION:
            raise ValueError(
                f"NEB checkpoint version {data.get('version')} (this code reads {VERSION})"
            )
        refine = None
        if data["refine"] is not None:
            r = data["refine"]
            band = _band(r)
            refine = RefineState(
                outer=int(r["outer"]), trust=float(r["trust"]),
                best=np.inf if r["best"] is None else float(r["best"]),
                positions=band.positions, known=band.known,
                observations=[_unpoint(o) for o in r["observations"]], history=r["history"],
                best_band=_band(r.get("best_band")),
            )  # fmt: skip
        return cls(ends=[_unpoint(e) for e in data["ends"]],
                   endpoints_converged=data["endpoints_converged"],
                   endpoint_max_force=data["endpoint_max_force"],
                   final_end_mapped=data["final_end_mapped"],
                   endpoint_calls=int(data["endpoint_calls"]), band_calls=int(data["band_calls"]),
                   cheap_calls=int(data["cheap_calls"]), refine=refine, note=data.get("note", ""),
                   extra=data.get("extra", {}))  # fmt: skip

    def save(self, path: str | Path) -> None:
        """Write atomically (a kill mid-write leaves the previous checkpoint)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json()))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> NEBCheckpoint | None:
        """The checkpoint at ``path``, or None when there is none yet."""
        path = Path(path)
        if not path.is_file():
            return None
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (json.JSONDecodeError, KeyError, ValueError) as exc:
            raise ValueError(
                f"unreadable NEB checkpoint {path}: {exc} (fix: move it away to start afresh)"
            ) from exc
