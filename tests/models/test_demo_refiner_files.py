"""The demo refiner's files load without diffusers' "config attributes ... not expected" warning."""

from __future__ import annotations

import json
import shutil

from bci_app.models.bundle import demo_bundle_path
from bci_app.models.refiners.demo import DemoRefiner

NOISE = "were passed to AutoencoderTiny, but are not expected"


def test_saved_and_old_files_load_quietly(tmp_path, capfd):
    old = tmp_path / "old"
    shutil.copytree(demo_bundle_path() / "refiner", old)
    vae_cfg = old / "vae" / "config.json"
    cfg = json.loads(vae_cfg.read_text())
    cfg["block_out_channels"] = cfg["decoder_block_out_channels"]  # as diffusers used to save it
    vae_cfg.write_text(json.dumps(cfg))

    ref = DemoRefiner.from_pretrained(old, trace=False)
    assert list(ref.vae.config.block_out_channels) == list(cfg["decoder_block_out_channels"])
    ref.save(tmp_path / "new")
    assert "block_out_channels" not in json.loads((tmp_path / "new" / "vae" / "config.json").read_text())
    again = DemoRefiner.from_pretrained(tmp_path / "new", trace=False)
    assert list(again.vae.config.block_out_channels) == list(cfg["decoder_block_out_channels"])
    assert NOISE not in capfd.readouterr().err
