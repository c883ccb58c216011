"""`gwstream train` end to end on a tiny recipe (slow: about a minute)."""

import json
import subprocess
import sys

import pytest

from gwstream.models.scorer import Scorer
from tests.daemon.streams import write_toml


@pytest.mark.slow
def test_train_cli_writes_weights_card_and_history(tmp_path):
    write_toml(tmp_path / "train.toml", {"train": {
        "epochs": 2, "windows_per_epoch": 256, "batch_size": 32, "n_waveforms": 16, "n_val_waveforms": 8,
        "val_noise_windows": 200, "val_windows_per_snr": 40, "workers": 1, "out_dir": str(tmp_path / "out"),
        "weights": str(tmp_path / "m.pt"), "injections": {"approximant": "IMRPhenomD", "spin": "aligned"},
    }})
    proc = subprocess.run([sys.executable, "-m", "gwstream.daemon.cli", "train", "--config",
                           str(tmp_path / "train.toml"), "--no-progress"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["weights"] == str(tmp_path / "m.pt")
    scorer = Scorer.from_checkpoint(tmp_path / "m.pt")
    assert scorer.meta["config"]["epochs"] == 2 and scorer.name == "factorized"
    card = (tmp_path / "m.md").read_text()
    assert "Model card" in card and scorer.sha256 in card
    history = json.loads((tmp_path / "m.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]


def test_train_names_an_init_checkpoint_of_another_network(tmp_path):
    from gwstream.models.networks import build_model
    from gwstream.models.scorer import save_checkpoint

    save_checkpoint(build_model("baseline"), tmp_path / "b.pt")
    write_toml(tmp_path / "train.toml", {"train": {"model": "factorized", "init_weights": str(tmp_path / "b.pt"),
                                                   "n_waveforms": 4, "n_val_waveforms": 4, "workers": 1,
                                                   "out_dir": str(tmp_path / "out"), "weights": str(tmp_path / "m.pt"),
                                                   "injections": {"approximant": "IMRPhenomD", "spin": "aligned"}}})
    proc = subprocess.run([sys.executable, "-m", "gwstream.daemon.cli", "train", "--config",
                           str(tmp_path / "train.toml"), "--no-progress"], capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "train.init_weights" in proc.stderr and "factorized" in proc.stderr
    assert not (tmp_path / "m.pt").exists()
