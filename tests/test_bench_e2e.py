"""The quick benchmark preset end to end through the real training engine, killed part-way and resumed;
its report is then checked in headless Chromium where one is installed (tests/test_report_browser.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from lssat.bench.store import ResultsStore
from lssat.cli import main
from test_report_browser import browser_available, check_narrow, check_report, start_browser

pytestmark = pytest.mark.slow


def _done(bench: Path) -> int:
    # The store is replaced atomically, so a read never sees half a file: any error here is real.
    return sum(e["status"] == "done" for e in ResultsStore(bench).entries())


def test_quick_preset_killed_and_resumed(tmp_path, capsys):
    bench = tmp_path / "bench"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lssat.cli", "bench", "quick", "-o", str(bench)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    while _done(bench) < 1 and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate()[0]
    assert proc.returncode == 130, output[-2000:]
    assert "interrupted" in output and not (bench / "report.md").exists()
    first = {e["cell_id"] for e in ResultsStore(bench).entries() if e["status"] == "done"}
    assert 1 <= len(first) < 24

    assert main(["bench", "quick", "-o", str(bench)]) == 0
    err = capsys.readouterr().err
    summary = next(line for line in err.splitlines() if line.startswith("benchmark finished"))
    # only the missing cells ran: the rest were skipped (or collected from their run folders)
    ran = int(summary.split(" run now")[0].rsplit(", ", 1)[1])
    assert ran == 24 - len(first)
    entries = ResultsStore(bench).entries()
    assert len(entries) == 24 and all(e["status"] == "done" for e in entries)
    assert len({e["cell_id"] for e in entries}) == 24
    for e in entries:  # one engine run folder with one done record per cell
        records = list((bench / e["run_dir"]).glob("*/run_record.json"))
        assert len(records) == 1 and json.loads(records[0].read_text())["status"] == "done"
        assert e["record"]["cost"]["flops_per_image"] > 0
        assert set(e["record"]["metrics"]["test"]) >= {"acc"}

    md = (bench / "report.md").read_text()
    for section in ("## Main results", "### Q1", "### Q2", "### Q3", "## Cost", "## Fairness",
                    "## Learning curves", "## Reconstructions"):
        assert section in md
    assert "**Verdict:**" in md and "built-in synthetic faces" in md
    main_table = pd.read_csv(bench / "tables/main.csv")
    assert set(main_table.backbone) == {"vit-a", "vit-b", "vit-c"} and set(main_table.seeds) == {2}
    assert (bench / "plots/recon_lssat-ldp.png").is_file() and (bench / "plots/learning_curves.png").is_file()
    fair = pd.read_csv(bench / "tables/fairness_deepfake_skin_tone.csv")
    assert set(fair.recipe) == {"supervised", "lssat-ldp"}
    html = (bench / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5
    if browser_available():  # the quick benchmark's report in headless Chromium (tests/test_report_browser.py)
        driver = start_browser()
        try:
            check_report(driver, bench / "report.html")
            check_narrow(driver, bench / "report.html")
        finally:
            driver.quit()
