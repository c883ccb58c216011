"""Configuration: TOML -> frozen, validated sections; bad keys and values named in errors."""

import dataclasses
from pathlib import Path

import pytest
from gwstream.daemon.config import Config, config_from_dict, load_config
from gwstream.daemon.errors import ConfigError

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)


def test_defaults_and_derived_values():
    cfg = load_config()
    assert cfg.data.ifos == ("H1", "L1")
    assert cfg.data.resample_factor == 8
    assert cfg.ingest.block_ns == 1_000_000_000
    assert cfg.data.channel("L1") == "L1:GDS-CALIB_STRAIN"


def test_sections_are_frozen():
    cfg = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.psd.fftlength_s = 8.0


def test_override_by_dotted_key():
    cfg = config_from_dict({}, {"endpoints.frames": "tcp://127.0.0.1:6000", "ingest.block_s": 2})
    assert cfg.endpoints.frames == "tcp://127.0.0.1:6000"
    assert cfg.ingest.block_s == 2.0


@pytest.mark.parametrize(
    "data, key, words",
    [
        ({"psd": {"fft_length": 4}}, "psd.fft_length", "known keys"),
        ({"bogus": {}}, "bogus", "known keys"),
        ({"windows": {"window_s": 1.0, "stride_s": 2.0}}, "windows.stride_s", "stride longer than window"),
        ({"psd": {"fftlength_s": 8.0, "psd_length_s": 4.0}}, "psd.psd_length_s", "fftlength_s"),
        ({"data": {"input_rate_hz": 16384, "analysis_rate_hz": 3000}}, "data.input_rate_hz", "not an integer"),
        ({"data": {"ifos": ["H1", "X9"]}}, "data.ifos", "detectors among"),
        ({"psd": {"average": "mode"}}, "psd.average", "one of"),
        ({"psd": {"overlap": 1.0}}, "psd.overlap", "< 1"),
        ({"ingest": {"block_s": "one"}}, "ingest.block_s", "a number"),
        ({"ingest": {"high_water_mark": 1.5}}, "ingest.high_water_mark", "an integer"),
        ({"ingest": {"high_water_mark": True}}, "ingest.high_water_mark", "an integer"),
        ({"windows": {"stride_s": 0.0001}}, "windows.stride_s", "whole number of samples"),
        ({"endpoints": {"frames": "tcp://0.0.0.0:5555"}}, "endpoints.frames", "loopback"),
        ({"endpoints": {"frames": "http://x"}}, "endpoints.frames", "ZeroMQ endpoint"),
        ({"simulate": {"injections": {"mass1_msun": [50, 10]}}}, "simulate.injections.mass1_msun", "low <= high"),
        ({"simulate": {"injections": {"approximant": "IMRPhenomD", "spin": "isotropic"}}},
         "simulate.injections.spin", "precession"),
        ({"source": {"speed": "fast"}}, "source.speed", "'real', 'max'"),
        ({"psd": 3}, "psd", "a table"),
        ({"psd": {"min_change": 0.3}}, "psd.min_change", "< max_change"),
        ({"train": {"signal_fraction": 0.5, "single_ifo_fraction": 0.2, "hard_negative_fraction": 0.3}},
         "train.hard_negative_fraction", "plain noise"),
        ({"train": {"hard_negative_fraction": 0.1, "stretch_s": 32, "hard_negative_span_s": 24,
                    "hard_negative_slides": 16}}, "train.hard_negative_span_s", "inside the stretch"),
        ({"train": {"stages": [{"epochs": 2}, {"n_waveforms": 10}]}}, "train.stages[1].n_waveforms", "known keys"),
        ({"train": {"stages": [{"lr": -1.0}]}}, "train.stages[0].lr", "> 0"),
        ({"train": {"stages": [{"select_epoch": "first"}]}}, "train.stages[0].select_epoch", "one of"),
        ({"train": {"stages": {"epochs": 2}}}, "train.stages", "[[train.stages]]"),
        ({"train": {"single_ifo_fraction": 0.2, "stages": [{}, {"hard_negative_fraction": 0.4}]}},
         "train.stages[1].hard_negative_fraction", "plain noise"),
    ],
)
def test_rejections_name_key_value_and_expectation(data, key, words):
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert info.value.key == key
    assert words in str(info.value)
    assert repr(info.value.value) in str(info.value) or str(info.value.value) in str(info.value)


def test_remote_endpoint_allowed_only_with_allow_remote_and_curve():
    cfg = config_from_dict({"endpoints": {"frames": "tcp://10.0.0.1:5555", "allow_remote": True,
                                          "curve_server_secret": "server.key_secret"}})
    assert cfg.endpoints.frames.startswith("tcp://10.")
    with pytest.raises(ConfigError, match="CURVE"):
        config_from_dict({"endpoints": {"frames": "tcp://10.0.0.1:5555", "allow_remote": True}})
    with pytest.raises(ConfigError, match="loopback or ipc"):
        config_from_dict({"endpoints": {"blocks": "tcp://10.0.0.1:5557", "allow_remote": True,
                                        "curve_server_secret": "server.key_secret"}})


def test_bad_toml_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[psd\nfftlength_s = 4")
    with pytest.raises(ConfigError, match="valid TOML"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "nope.toml")


def test_train_stages_inherit_train_and_get_their_own_seeds():
    cfg = config_from_dict({"train": {"lr": 1e-3, "seed": 7, "epochs": 5, "loud_fraction": 0.1, "stages": [
        {"epochs": 2}, {"lr": 1e-4, "loud_fraction": 0.0}, {"seed": 3, "snr_end": [6.0, 12.0]}]}})
    stages = cfg.train.stage_configs()
    assert [s.epochs for s in stages] == [2, 5, 5]
    assert [s.lr for s in stages] == [1e-3, 1e-4, 1e-3]
    assert [s.loud_fraction for s in stages] == [0.1, 0.0, 0.1]
    assert [s.seed for s in stages] == [7, 8, 3]
    assert stages[2].snr_end == (6.0, 12.0) and stages[0].snr_end == cfg.train.snr_end
    assert all(s.stages == () for s in stages)
    assert config_from_dict({}).train.stage_configs() == [config_from_dict({}).train]


def test_train_stages_round_trip_through_toml():
    import tomllib

    from gwstream.daemon.settings import to_toml

    cfg = load_config(Path(__file__).parents[2] / "configs" / "train.toml")
    assert len(cfg.train.stages) == 2
    text = to_toml(cfg.to_dict())
    assert text.count("[[train.stages]]") == 2
    assert config_from_dict(tomllib.loads(text)) == cfg
