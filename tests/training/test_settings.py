"""Typed training settings: TOML tables -> dataclasses, unknown keys and tables are errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bci_app.config import (
    AppConfig,
    EncoderSettings,
    TrainConfig,
    load_config,
    load_train_config,
    settings,
    to_dict,
)

CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.mark.parametrize("name", ["demo.toml", "default.toml", "calibration.toml"])
def test_shipped_recipes_load_typed(name):
    app = load_config(CONFIGS / name)
    train = load_train_config(CONFIGS / name)
    assert isinstance(app, AppConfig) and app.training == train
    assert isinstance(train.encoder, EncoderSettings) and train.encoder.epochs > 0


def test_demo_recipe_values_land_in_the_dataclasses():
    cfg = load_train_config(CONFIGS / "demo.toml")
    assert cfg.encoder.kwargs == {"bin_ms": 40.0, "dropout": 0.2} and cfg.encoder.lda_init is True
    assert cfg.gan.condition == "posterior" and cfg.gan.betas == [0.0, 0.99]  # default kept
    assert cfg.semantic.text_encoder == {"type": "minilm", "seq_len": 16}
    assert cfg.refiner.save_dtype == "float16" and cfg.refiner.train["unet_steps"] == 3500
    assert cfg.refiner.train["cross_attention_levels"] == 3 and "4:0.75:1.25" in cfg.refiner.sample_grid
    assert cfg.train.keep_checkpoints is False and cfg.baseline.bin_ms == 40.0


def test_unknown_keys_and_tables_name_what_is_allowed(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[gan]\nlr = 1e-3\n")
    with pytest.raises(ValueError, match=r"unknown setting 'gan.lr'; allowed: .*lr_d, lr_g"):
        load_train_config(f)
    f.write_text("[inferense]\ndevice = 'cpu'\n")
    for load in (load_config, load_train_config):
        with pytest.raises(ValueError, match=r"unknown table \[inferense\].*allowed tables: epoch, "):
            load(f)
    f.write_text("[refiner]\nsave_dtype = 'int8'\n")
    with pytest.raises(ValueError, match="refiner.save_dtype is 'int8'"):
        load_train_config(f)
    f.write_text("[inference]\ncompile = true\n")  # read by nothing: removed
    with pytest.raises(ValueError, match="unknown setting 'inference.compile'"):
        load_config(f)
    f.write_text("[encoder]\nkwargs = 3\n")
    with pytest.raises(ValueError, match="setting 'encoder.kwargs' must be a table"):
        load_train_config(f)
    f.write_text("[encoder]\nepochs = 'ten'\n")
    with pytest.raises(ValueError, match=r"setting 'encoder.epochs' must be int, got 'ten' \(str\)"):
        load_train_config(f)
    f.write_text("[gan]\nlr_g = 1\n")  # an int where a float is expected is fine
    assert load_train_config(f).gan.lr_g == 1.0


def test_app_and_training_tables_in_one_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[inference]\nqueue_size = 3\n[encoder]\nepochs = 2\nkwargs = { bin_ms = 20.0 }\n"
                 "[acquisition]\nbrainflow_params = { serial_port = '/dev/ttyUSB0' }\n")
    app = load_config(f)
    assert app.inference.queue_size == 3 and app.training.encoder.epochs == 2
    assert app.training.encoder.kwargs == {"bin_ms": 20.0}
    assert app.acquisition.brainflow_params == {"serial_port": "/dev/ttyUSB0"}
    over = load_train_config(f, overrides={"gan": {"epochs": 1}})
    assert over.gan.epochs == 1 and over.encoder.epochs == 2


def test_settings_from_dicts_and_records():
    assert settings(EncoderSettings, {"epochs": 3}).epochs == 3
    with pytest.raises(ValueError, match="unknown setting 'encoder.epoch'"):
        settings(EncoderSettings, {"epoch": 3}, "encoder.")
    # a bundle's record reads back as the same settings
    cfg = load_train_config(CONFIGS / "demo.toml")
    assert load_train_config(base=to_dict(cfg)) == cfg
    assert settings(TrainConfig, to_dict(cfg)) == cfg


def test_settings_nothing_read_are_skipped_with_a_warning(tmp_path, caplog):
    """Keys earlier versions accepted but never read (the streams are named on the command
    line): a file that sets them still loads, and says so; any other unknown key is an error."""
    from bci_app.config import RETIRED, AcquisitionConfig, EpochConfig

    f = tmp_path / "old.toml"
    f.write_text("[acquisition]\nsource = 'lsl:amp'\nmarker_pattern = '^img:(?P<id>.+)$'\n"
                 "reconnect = false\nbrainflow_params = { timeout = 3 }\n"
                 "[epoch]\ntmin = 0.05\nbuffer_seconds = 20.0\n")
    with caplog.at_level("WARNING", logger="bci_app.config"):
        app = load_config(f)
    assert app.acquisition == AcquisitionConfig(brainflow_params={"timeout": 3})
    assert app.epoch == EpochConfig(tmin=0.05)
    warned = [r.getMessage() for r in caplog.records]
    for key in ("acquisition.source", "acquisition.marker_pattern", "acquisition.reconnect",
                "epoch.buffer_seconds"):
        assert any(f"{f}: setting '{key}' is ignored" in m and RETIRED[key] in m for m in warned), warned
    assert len(warned) == 4
    f.write_text("[acquisition]\nsorce = 'lsl'\n")
    with pytest.raises(ValueError, match=r"unknown setting 'acquisition.sorce'; allowed: brainflow_params"):
        load_config(f)
