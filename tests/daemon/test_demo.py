"""`gwstream demo` (what `make demo` runs), short: the real daemon, a subscriber, a summary, a clean exit."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]


def test_short_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "gwstream.daemon.cli", "demo", "--config", str(REPO / "configs" / "demo.toml"),
         "--duration", "40", "--speed", "max", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["duration_s"] == 40 and summary["n_injections"] >= 1
    assert "injections:" in proc.stdout and "alert latency" in proc.stdout
    log = (out / "daemon.log").read_text()
    assert "end of stream" in log and "stopped search (exit code 0)" in log
    # the daemon left its ranking state and archive behind
    assert (out / "daemon" / "ranking-state.h5").exists()


def test_alert_plot_is_written(tmp_path):
    from gwstream.daemon.config import config_from_dict
    from gwstream.daemon.proc.demo import _plot_alert
    from gwstream.daemon.sim.simulate import Simulator

    cfg = config_from_dict({"simulate": {"sample_rate_hz": 2048, "injections": {
        "approximant": "IMRPhenomD", "snr": [30.0, 30.0], "spacing_s": 40.0, "jitter_s": 0.0}}})
    tc = Simulator(cfg.simulate, seed=1, duration_s=40, injections=True).injection_table()["tc"][0]
    alert = {"event_id": "gwstream-test", "gpstime": float(tc), "stat": 40.0, "far": 1e-7}
    _plot_alert(tmp_path / "a.png", cfg.simulate, 1, 40, alert)
    assert (tmp_path / "a.png").stat().st_size > 20_000
