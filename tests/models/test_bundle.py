from __future__ import annotations

import json

import pytest
import torch

from bci_app.models import bundle as b
from bci_app.models.encoders import build_encoder
from bci_app.models.saliency_gan import SaliencyGenerator
from bci_app.models.semantic import SemanticHead


def get_dummy_components(n_chans=4, n_times=20):
    torch.manual_seed(0)
    return {
        "encoder": build_encoder("shallow", n_chans, 6, n_times, sfreq=100.0, n_filters=4),
        "generator": SaliencyGenerator(z_dim=4, cond_dim=6, resolution=8, base_channels=4),
        "semantic": SemanticHead(6, seq_len=2, embed_dim=5, hidden=8, n_prototypes=3),
    }


def _config(n_chans=4):
    return {"spec": {"sfreq": 100.0, "ch_names": [f"C{i}" for i in range(n_chans)], "tmin": 0.0, "tmax": 0.2},
            "n_times": 20}


def test_save_load_identical_outputs(tmp_path):
    comps = get_dummy_components()
    b.save_bundle(tmp_path, _config(), comps)
    cfg, loaded = b.load_bundle(tmp_path)
    assert cfg["format"] == b.BUNDLE_FORMAT and set(loaded) == set(comps)
    x = torch.randn(3, 4, 20)
    for m in list(comps.values()) + list(loaded.values()):
        m.eval()
    with torch.no_grad():
        f1, f2 = comps["encoder"](x), loaded["encoder"](x)
        torch.testing.assert_close(f1, f2, rtol=0, atol=0)
        z = torch.randn(3, 4)
        torch.testing.assert_close(comps["generator"](z, f1), loaded["generator"](z, f2), rtol=0, atol=0)
        torch.testing.assert_close(comps["semantic"](f1), loaded["semantic"](f2), rtol=0, atol=0)


def test_check_compatible_names_both_sides(tmp_path):
    cfg = _config()
    b.check_compatible(cfg, [f"C{i}" for i in range(4)], 100.0, 20)
    with pytest.raises(ValueError, match=r"stream has 3 channels.*expects 4"):
        b.check_compatible(cfg, ["C0", "C1", "C2"], 100.0, 20)
    with pytest.raises(ValueError, match=r"'X1'.*'C1'"):
        b.check_compatible(cfg, ["C0", "X1", "C2", "C3"])
    with pytest.raises(ValueError, match=r"250.0 Hz.*100.0 Hz"):
        b.check_compatible(cfg, sfreq=250.0)
    with pytest.raises(ValueError, match=r"44 samples.*expects 20"):
        b.check_compatible(cfg, n_times=44)


def test_missing_and_corrupt_bundles_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        b.resolve_bundle_path(tmp_path / "nope")
    b.save_bundle(tmp_path, _config(), get_dummy_components())
    (tmp_path / "encoder.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="encoder.safetensors"):
        b.load_bundle(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["components"]["encoder"]["class"] = "Evil"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unknown component class 'Evil'"):
        b.load_component(tmp_path, "encoder")


def test_weights_of_another_shape_are_rejected(tmp_path):
    comps = get_dummy_components()
    b.save_bundle(tmp_path, _config(), comps)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["components"]["semantic"]["kwargs"]["n_prototypes"] = 0
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="semantic.safetensors"):
        b.load_component(tmp_path, "semantic")


def test_a_component_referenced_from_another_bundle_is_found_relative_or_by_name(tmp_path):
    """``"bundle"`` in a component entry: "demo" resolves to the shipped bundle wherever it is
    installed, a relative path to a bundle beside this one; a missing one says where it looked
    and what to do."""
    import json

    import pytest

    from bci_app.models.bundle import CONFIG_NAME, component_base, demo_bundle_path

    me = tmp_path / "mine"
    other = tmp_path / "shared" / "lab_refiner"
    me.mkdir()
    other.mkdir(parents=True)
    (other / CONFIG_NAME).write_text(json.dumps({"format": "x"}))
    assert component_base(me, {"path": "refiner"}, "refiner") == me
    assert component_base(me, {"path": "refiner", "bundle": "demo"}, "refiner") == demo_bundle_path()
    assert component_base(me, {"bundle": "../shared/lab_refiner"}, "refiner").resolve() == other.resolve()
    with pytest.raises(FileNotFoundError, match=r"bundle '\.\./gone'.*copy that bundle"):
        component_base(me, {"bundle": "../gone"}, "classifier")
