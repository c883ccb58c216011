"""`gwstream demo` (what `make demo` runs), short: real processes, identical samples, clean exit."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]


def test_short_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "gwstream.daemon.cli", "demo", "--config", str(REPO / "configs" / "demo.toml"),
         "--duration", "20", "--out", str(out)],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["identical"] is True
    assert summary["blocks"] == 20
    assert not [k for k in summary["ingest_counters"] if k.startswith("rejected.")]
    assert "samples identical to the simulation: yes" in proc.stdout
