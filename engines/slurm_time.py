"""How long the current SLURM batch job has left, and when a code should stop itself.

:func:`slurm_remaining_s` reads ``SLURM_JOB_END_TIME`` or asks ``squeue -o %L``;
:func:`slurm_stop_after_s` keeps max(:data:`SLURM_MARGIN_S`, 5 %) of it for saving and cleanup.
Re-exported by :mod:`perovflow.engines.runner`.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping

SLURM_MARGIN_S = 120.0  # at least this much of the batch job is kept for saving and cleanup
SLURM_MARGIN_FRACTION = 0.05


def parse_slurm_time(text: str) -> float | None:
    """Seconds in a SLURM duration (``squeue %L``): ``[days-]hours:minutes:seconds``,
    ``minutes:seconds``, ``minutes``, ``days-hours[:minutes]``; None for UNLIMITED/NOT_SET/INVALID.
    """
    text = text.strip()
    days = 0
    if "-" in text:
        head, text = text.split("-", 1)
        if not head.isdigit():
            return None
        days = int(head)
        parts = text.split(":")
        if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
            return None
        h, m, sec = ([int(p) for p in parts] + [0, 0])[:3]
        return float(days * 86400 + h * 3600 + m * 60 + sec)
    parts = text.split(":")
    if not text or not all(p.isdigit() for p in parts) or len(parts) > 3:
        return None
    nums = [int(p) for p in parts]
    if len(nums) == 1:  # a bare number is minutes in SLURM's time format
        return float(nums[0] * 60)
    if len(nums) == 2:
        return float(nums[0] * 60 + nums[1])
    return float(nums[0] * 3600 + nums[1] * 60 + nums[2])


def slurm_remaining_s(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds the current SLURM job has left; None outside SLURM or when unknown.

    ``SLURM_JOB_END_TIME`` (epoch seconds, set by recent SLURM) is used when present,
    otherwise ``squeue -h -j $SLURM_JOB_ID -o %L``.
    """
    env = os.environ if env is None else env
    job_id = env.get("SLURM_JOB_ID")
    if not job_id:
        return None
    end = env.get("SLURM_JOB_END_TIME", "").strip()
    if end.isdigit() and int(end) > 0:
        return max(0.0, int(end) - time.time())
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", "%L"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.strip().splitlines()
    return parse_slurm_time(lines[0]) if out.returncode == 0 and lines else None


def slurm_stop_after_s(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds a code may run before it should stop itself to leave the SLURM job time to save
    (remaining time minus max(SLURM_MARGIN_S, 5 %)); None outside SLURM or when unknown."""
    left = slurm_remaining_s(env)
    if left is None:
        return None
    return left - max(SLURM_MARGIN_S, SLURM_MARGIN_FRACTION * left)
