"""`gwstream train` end to end on tiny recipes (the one-stage run is marked slow: about a minute)."""

import json
import subprocess
import sys

import pytest
import torch
from gwstream.daemon.settings import to_toml
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


def test_train_stages_run_in_order_and_resume(tmp_path):
    """Two stages in one run; a rerun resumes past both (their checkpoints) and writes the same weights."""
    (tmp_path / "train.toml").write_text(to_toml({"train": {
        "windows_per_epoch": 256, "batch_size": 32, "n_waveforms": 16, "n_val_waveforms": 8,
        "val_noise_windows": 200, "val_windows_per_snr": 40, "workers": 1, "threads": 1,
        "out_dir": str(tmp_path / "out"), "weights": str(tmp_path / "m.pt"),
        "injections": {"approximant": "IMRPhenomD", "spin": "aligned"},
        "stages": [{"epochs": 2}, {"epochs": 1, "lr": 3e-4, "hard_negative_fraction": 0.1, "hard_negative_slides": 4,
                                    "hard_negative_span_s": 8, "select_epoch": "last"}],
    }}))
    cmd = [sys.executable, "-m", "gwstream.daemon.cli", "train", "--config", str(tmp_path / "train.toml"),
           "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "stage 2 of 2" in proc.stderr and "hard negatives" in proc.stderr
    assert (tmp_path / "out" / "stage-1" / "factorized" / "checkpoint.pt").exists()
    assert (tmp_path / "out" / "stage-2" / "factorized" / "checkpoint.pt").exists()
    doc = json.loads((tmp_path / "m.json").read_text())
    assert [(h["stage"], h["epoch"]) for h in doc["history"]] == [(1, 1), (1, 2), (2, 1)]
    assert [s["seed"] for s in doc["meta"]["stages"]] == [0, 1]
    assert doc["meta"]["train_wall_s"] >= sum(h["wall_s"] for h in doc["history"])
    card = (tmp_path / "m.md").read_text()
    assert "## Stages" in card and "| 2 | 1 | 0.0003 | 1 |" in card
    first = {k: v.clone() for k, v in Scorer.from_checkpoint(tmp_path / "m.pt").model.state_dict().items()}
    # a rerun finds both stages done: no epoch is trained again, the same weights are written
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming" in proc.stderr and "loss=" not in proc.stderr
    again = Scorer.from_checkpoint(tmp_path / "m.pt").model.state_dict()
    assert again.keys() == first.keys() and all(torch.equal(again[k], first[k]) for k in first)


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


def _tiny_factorized(tmp_path, **keys) -> dict:
    """[train] of a seconds-long one-epoch run fine-tuning ``tmp_path / "f.pt"``, with ``keys`` on top."""
    return {"model": "factorized", "init_weights": str(tmp_path / "f.pt"), "epochs": 1, "lr": 1e-3,
            "windows_per_epoch": 64, "batch_size": 32, "n_waveforms": 8, "n_val_waveforms": 4,
            "val_noise_windows": 50, "val_windows_per_snr": 10, "workers": 1, "threads": 1,
            "out_dir": str(tmp_path / "out"), "weights": str(tmp_path / "m.pt"),
            "injections": {"approximant": "IMRPhenomD", "spin": "aligned"}, **keys}


def test_train_adds_a_template_branch_to_an_init_network(tmp_path):
    """train.template_pairs on a network without the branch: built, its filters whitened templates, then trained."""
    from gwstream.models.networks import build_model
    from gwstream.models.scorer import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(build_model("factorized"), tmp_path / "f.pt")
    base = _tiny_factorized(tmp_path, template_pairs=2, template_lr_scale=5.0)
    write_toml(tmp_path / "train.toml", {"train": base})
    cmd = [sys.executable, "-m", "gwstream.daemon.cli", "train", "--config", str(tmp_path / "train.toml"),
           "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "template branch: 2 pairs of 1024 taps" in proc.stderr
    model = Scorer.from_checkpoint(tmp_path / "m.pt").model
    assert (model.template_pairs, model.template_taps) == (2, 1024)
    torch.testing.assert_close(model.templates.weight.norm(dim=-1), torch.ones(4, 1), atol=0.02, rtol=0)
    groups = torch.load(tmp_path / "out" / "factorized" / "checkpoint.pt", weights_only=True)["optimizer"]
    # the rest of the network, the template filters at 1 % of lr, the template units' MLP weights at 5 x
    assert sorted(g["initial_lr"] for g in groups["param_groups"]) == pytest.approx([1e-5, 1e-3, 5e-3])
    # a network that has a larger branch, or one that cannot have it: named errors
    write_toml(tmp_path / "train.toml", {"train": {**base, "init_weights": str(tmp_path / "m.pt"),
                                                   "template_pairs": 1}})
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "train.template_pairs" in proc.stderr
    assert "2 or more pairs of 1024 taps" in proc.stderr
    write_toml(tmp_path / "train.toml", {"train": {**base, "model": "baseline", "init_weights": ""}})
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "train.template_pairs" in proc.stderr and "factorized" in proc.stderr
    # more pairs and one gain per template: the trained network grown by a pair, its gain converted, trained on
    write_toml(tmp_path / "train.toml", {"train": {**base, "init_weights": str(tmp_path / "m.pt"),
                                                   "template_pairs": 3, "template_gain": "per_template",
                                                   "weights": str(tmp_path / "p.pt"), "out_dir": str(tmp_path / "out-p")}})
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "template branch: 1 pairs of 1024 taps" in proc.stderr
    per = Scorer.from_checkpoint(tmp_path / "p.pt").model
    assert per.template_pairs == 3
    assert per.template_gain.shape == (3,) and per.hparams["per_template_gain"] is True
    write_toml(tmp_path / "train.toml", {"train": {**base, "init_weights": "", "template_pairs": 0,
                                                   "template_gain": "per_template"}})
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "train.template_gain" in proc.stderr


def test_train_grows_the_branch_by_a_template_bank_with_diagonal_units(tmp_path):
    """train.template_bank: the init network's branch grown by a file's templates (cut as the ladder's, from
    their own masses and spins), its template units made diagonal, then trained; a count that does not add
    up, or a file that is not a bank, is a named error."""
    import numpy as np
    from gwstream.daemon.config import load_config
    from gwstream.daemon.train.training import template_filters
    from gwstream.models.networks import build_model
    from gwstream.models.scorer import save_checkpoint

    torch.manual_seed(0)
    net = build_model("factorized", template_pairs=2, template_taps=1024)
    net.set_templates(np.random.default_rng(0).standard_normal((4, 1024)) / 32)
    save_checkpoint(net, tmp_path / "f.pt")
    (tmp_path / "bank.csv").write_text("# two templates\nmass1,mass2,spin1z,spin2z\n30.0,20.0,0.3,-0.2\n"
                                       "12.5,9.0,0.0,0.5\n")
    base = _tiny_factorized(tmp_path, template_pairs=4, template_bank=str(tmp_path / "bank.csv"),
                            template_units="diagonal")
    write_toml(tmp_path / "train.toml", {"train": base})
    cmd = [sys.executable, "-m", "gwstream.daemon.cli", "train", "--config", str(tmp_path / "train.toml"),
           "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = Scorer.from_checkpoint(tmp_path / "m.pt").model
    assert model.template_pairs == 4 and model.diagonal_template_units
    cfg = load_config(tmp_path / "train.toml")
    want = template_filters(cfg, 2, 1024, {"mass1": np.array([30.0, 12.5]), "mass2": np.array([20.0, 9.0]),
                                          "spin1z": np.array([0.3, 0.0]), "spin2z": np.array([-0.2, 0.5])})
    got = model.templates.weight[:, 0].detach().numpy()
    # the new pairs are rows 2, 3 (templates) and 6, 7 (quadratures); trained at 1 % of lr, they moved little
    np.testing.assert_allclose(got[[2, 3, 6, 7]], want, atol=5e-3, rtol=0)
    h, c = model.proj_h1.out_channels - 4, model.hparams["channels"]
    assert not model.proj_h1.weight[h:, :c].any()
    write_toml(tmp_path / "train.toml", {"train": {**base, "template_pairs": 5}})
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "train.template_pairs" in proc.stderr
    assert "the 2 pairs of the network plus the 2 templates of train.template_bank" in proc.stderr
    (tmp_path / "bad.csv").write_text("m1,m2\n30,20\n")
    write_toml(tmp_path / "train.toml", {"train": {**base, "template_bank": str(tmp_path / "bad.csv")}})
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "train.template_bank" in proc.stderr and "mass1, mass2, spin1z" in proc.stderr


def test_train_from_scratch_around_placed_templates(tmp_path):
    """From random weights: train.dilations shapes the encoder, a placed bank's branch starts at
    train.template_gain_init and, with train.template_filter_lr_scale = 0, its filters stay exactly as placed
    (frozen) while the rest trains; those keys on a network they cannot apply to are named errors."""
    import numpy as np
    from gwstream.daemon.config import load_config
    from gwstream.daemon.train.training import template_filters

    (tmp_path / "bank.csv").write_text("mass1,mass2,spin1z,spin2z\n30.0,20.0,0.3,-0.2\n12.5,9.0,0.0,0.5\n")
    base = _tiny_factorized(tmp_path, init_weights="", dilations=[2, 4, 8, 16, 32], template_pairs=2,
                            template_bank=str(tmp_path / "bank.csv"), template_units="diagonal",
                            template_gain_init=1.0, template_filter_lr_scale=0.0)
    write_toml(tmp_path / "train.toml", {"train": base})
    cmd = [sys.executable, "-m", "gwstream.daemon.cli", "train", "--config", str(tmp_path / "train.toml"),
           "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scorer = Scorer.from_checkpoint(tmp_path / "m.pt")
    model = scorer.model
    assert tuple(model.hparams["dilations"]) == (2, 4, 8, 16, 32) and model.template_pairs == 2
    want = template_filters(load_config(tmp_path / "train.toml"), 2, 1024,
                            {"mass1": np.array([30.0, 12.5]), "mass2": np.array([20.0, 9.0]),
                             "spin1z": np.array([0.3, 0.0]), "spin2z": np.array([-0.2, 0.5])})
    assert np.array_equal(model.templates.weight[:, 0].detach().numpy(), want)  # frozen: not a bit moved
    gain = float(model.template_gain)
    assert gain != 1.0 and abs(gain - 1.0) < 0.1  # started at 1, trained (one epoch at lr 1e-3)
    doc = json.loads((tmp_path / "m.json").read_text())["meta"]
    assert doc["n_parameters"] - doc["n_trainable"] == 4 * 1024  # the frozen filters are counted, not trained
    assert "of them trained" in (tmp_path / "m.md").read_text()
    for keys, name in (({"template_pairs": 0, "template_bank": ""}, "train.template_gain_init"),
                       ({"template_pairs": 0, "template_bank": "", "template_gain_init": 0.0},
                        "train.template_filter_lr_scale"),
                       ({"dilations": [2, 0]}, "train.dilations"),
                       ({"model": "resnet", "template_pairs": 0, "template_bank": "", "template_gain_init": 0.0,
                         "template_filter_lr_scale": 0.01, "template_units": "dense"}, "train.dilations")):
        write_toml(tmp_path / "train.toml", {"train": {**base, **keys}})
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert proc.returncode != 0 and name in proc.stderr, (keys, proc.stderr[-2000:])
