"""Stopping perovflow while a code runs stops the code too (it runs in its own session)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Ctrl-C raises KeyboardInterrupt, as in a terminal (a shell's background job, e.g. under
# nohup or CI, inherits SIGINT ignored, and Python then leaves it ignored)
DRIVER = """
import signal
import sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from pathlib import Path
from perovflow.engines.process import run_command
run_command(["sleep", "120"], Path(sys.argv[1]), "sleep.out")
"""


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(x) for x in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_stopping_perovflow_stops_the_running_code(sig, tmp_path):
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)])
    deadline = time.monotonic() + 60
    while not (children := _children(driver.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert children, "the code never started"
    code = children[0]
    os.kill(driver.pid, sig)
    assert driver.wait(timeout=30) != 0
    assert not _alive(code), "the code ran on after perovflow stopped"
