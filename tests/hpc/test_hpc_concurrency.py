"""Embedded store under load: launchers, submitters and readers in separate processes.

FireWorks' ping thread runs every 0.05 s in each rocket (``PING_TIME_SECS`` in an
``FW_config.yaml``), so the main thread and the ping thread of every launcher write at
once. The count of real executions comes from a file each task appends to (one
``O_APPEND`` write per run), not from the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from perovflow.hpc.launchpad import get_launchpad
from perovflow.hpc.query import query

HERE = Path(__file__).parent
N_FWS, N_LAUNCHERS = 24, 4


def _start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(HERE / "hpc_workers.py"), *args],
        env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_launchers_submitters_readers_at_once_run_each_firework_once(tmp_path) -> None:
    fw_config = tmp_path / "FW_config.yaml"
    fw_config.write_text("PING_TIME_SECS: 0.05\n")
    env = {**os.environ, "FW_CONFIG_FILE": str(fw_config), "PYTHONPATH": str(HERE)}
    log = tmp_path / "runs.log"
    t0 = time.time()
    procs = {
        "submit-a": _start(["submit", str(log), str(N_FWS)], env, tmp_path),
        "submit-b": _start(["submit", str(log), str(N_FWS)], env, tmp_path),
        "read": _start(["read", str(N_FWS), "15"], env, tmp_path),
    }
    for i in range(N_LAUNCHERS):
        (tmp_path / f"l{i}").mkdir()
        procs[f"launch-{i}"] = _start(["launch", str(N_FWS)], env, tmp_path / f"l{i}")
    outs = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {err[-2000:]}"
        outs[name] = out
    elapsed = time.time() - t0

    reports = [json.loads(outs[k].strip().splitlines()[-1]) for k in ("submit-a", "submit-b")]
    # exactly one submitter added the study, the other found all of it present
    assert sorted((r["added"], r["present"]) for r in reports) == [(0, N_FWS), (N_FWS, 0)]
    runs = Counter(int(line.split()[0]) for line in log.read_text().splitlines())
    assert runs == Counter(range(N_FWS))  # every task ran, and exactly once
    pids = {line.split()[1] for line in log.read_text().splitlines()}
    assert len(pids) >= 2  # the work really was shared between launchers
    lp = get_launchpad()
    assert lp.fireworks.count_documents({}) == N_FWS
    assert lp.fireworks.count_documents({"state": "COMPLETED"}) == N_FWS
    assert lp.launches.count_documents({}) == N_FWS  # no firework checked out twice
    rows = query(study="stress", fields=["labels.n"])
    assert sorted(r["labels.n"] for r in rows) == list(range(N_FWS))  # no lost update
    reads = json.loads(outs["read"].strip().splitlines()[-1])
    assert reads["reads"] > 0 and reads["most_fws"] <= N_FWS and reads["most_rows"] <= N_FWS
    print(
        f"\nstress: {N_FWS} fireworks, {N_LAUNCHERS} launchers ({len(pids)} ran jobs), "
        f"2 submitters, {reads['reads']} status+query reads, {sum(runs.values())} runs, "
        f"{lp.launches.count_documents({})} launches, {len(rows)} results, {elapsed:.0f} s"
    )
