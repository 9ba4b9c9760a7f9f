"""The HTML report as a reader sees it: rendered by headless Chromium, screenshot checked."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from perovflow.analysis.bands import analyze_bands, plot_bands
from perovflow.analysis.report import section, write_report

CHROMIUM = next((c for c in ("chromium", "chromium-browser") if shutil.which(c)), None)
pytestmark = pytest.mark.browser  # in CI a missing chromium fails (tests/conftest.py)


def screenshot(html: Path, png: Path, size: tuple[int, int] = (1000, 1400)) -> np.ndarray:
    """Render ``html`` in headless Chromium; the screenshot as an (h, w, 3) array."""
    import matplotlib.image as mpimg

    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        f"--window-size={size[0]},{size[1]}", f"--screenshot={png}", html.as_uri(),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return mpimg.imread(png)[..., :3]


def test_report_renders_with_its_band_plot(qe_data: Path, tmp_path: Path):
    out = tmp_path / "report"
    res = analyze_bands(qe_data / "cspbbr3_bands")
    png = plot_bands(qe_data / "cspbbr3_bands", out / "figures" / "bands.png")
    sec = section(res, "CsPbBr3 band structure", [png], {"dir_name": str(qe_data)})
    answer = f"Cubic CsPbBr3 has a direct gap of {res.band_gap_eV:.2f} eV at R."
    paths = write_report([sec], out, title="CsPbBr3", answer=answer)
    # the page is opened from elsewhere (as a shared file): the plot must still show
    shared = tmp_path / "elsewhere" / "report.html"
    shared.parent.mkdir()
    shutil.copy(paths["html"], shared)
    shot = screenshot(shared, tmp_path / "shot.png")
    assert shot.shape[:2] == (1400, 1000)
    # the answer box (background #f3f6fb) comes first, near the top of the page
    box = np.all(np.abs(shot - np.array([0xF3, 0xF6, 0xFB]) / 255) < 0.01, axis=-1)
    rows = np.flatnonzero(box.sum(axis=1) > 500)  # rows the box spans
    assert rows.size and rows[0] < 200
    # below it the band lines in the plot's blue (#3952a3): a rendered image, not a broken icon
    blue = np.all(np.abs(shot - np.array([0x39, 0x52, 0xA3]) / 255) < 0.15, axis=-1)
    assert blue[rows[-1] + 1 :].sum() > 500
