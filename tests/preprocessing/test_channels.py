"""Channels by name and units to volts (the rules shared by live sources and offline loaders)."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from bci_app.preprocessing import (
    ChannelMap,
    PreprocessingSpec,
    epoch_raw,
    implausible_volts,
    pick_indices,
    volts_per_unit,
)
from bci_app.stimuli import MarkerMapper


@pytest.mark.parametrize(
    ("unit", "factor"),
    [
        ("V", 1.0), ("volts", 1.0), ("mV", 1e-3), ("millivolts", 1e-3), ("uV", 1e-6),
        ("\u00b5V", 1e-6), ("\u03bcV", 1e-6), ("microvolts", 1e-6), ("Microvolts ", 1e-6),
        ("nV", 1e-9), ("0", 1.0), ("-6", 1e-6), ("none", 1.0), ("", None), (None, None),
    ],
)  # fmt: skip
def test_volts_per_unit(unit, factor):
    assert volts_per_unit(unit) == factor


def test_non_voltage_unit_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unit 'counts' is not a voltage unit.*--units"):
        volts_per_unit("counts")


def test_pick_indices_by_name_any_case_any_order():
    available = ["EOG1", "cz", "Fz", "TRIGGER", "PZ", "EOG2"]
    assert pick_indices(available, ["Fz", "Cz", "Pz"]) == [2, 1, 4]


def test_missing_channel_is_named():
    with pytest.raises(
        ValueError, match=r"the stream lacks 2 channel\(s\) the model needs: Oz, O1;"
    ):
        pick_indices(["Fz", "Cz", "Pz"], ["Cz", "Oz", "O1"])
    with pytest.raises(ValueError, match=r"several channels for Cz \(Cz, CZ\)"):
        pick_indices(["Cz", "CZ", "Fz"], ["Cz"])


def test_channel_map_scales_and_unknown_units():
    names = ["EOG", "Cz", "Fz", "TRIG", "Pz"]
    units = ["microvolts", "uV", "mV", "none", None]
    cmap = ChannelMap.build(names, units, ["fz", "CZ", "Pz"])
    assert cmap.ch_names == ("fz", "CZ", "Pz")
    assert cmap.indices == (2, 1, 4)
    np.testing.assert_array_equal(cmap.scales, [1e-3, 1e-6, 1.0])
    assert cmap.unknown_units == ("Pz",)
    x = np.arange(15.0).reshape(5, 3)
    np.testing.assert_allclose(cmap.apply(x), [x[2] * 1e-3, x[1] * 1e-6, x[4]])
    # nothing picked away, reordered or scaled: the data passes as it is
    same = ChannelMap.build(["a", "b"], ["V", None])
    assert same.is_identity and same.unknown_units == ("b",)
    np.testing.assert_array_equal(same.apply(x[:2]), x[:2])
    first = ChannelMap.build(["a", "b"], ["V", "V"], ["a"])  # a subset is no identity
    assert not first.is_identity and first.apply(x[:2]).shape == (1, 3)
    with pytest.raises(ValueError, match=r"data has shape \(5, 3\); expected \(2, n_samples\)"):
        first.apply(x)
    # --units overrides the metadata for every kept channel
    over = ChannelMap.build(names, units, ["Cz", "Pz"], units_override="mV")
    np.testing.assert_array_equal(over.scales, [1e-3, 1e-3])
    assert over.unknown_units == ()
    # a picked channel in a unit that is no voltage is an error naming it; kept as is otherwise
    with pytest.raises(ValueError, match="channel Cz: unit 'counts'"):
        ChannelMap.build(["Cz"], ["counts"], ["Cz"])
    assert ChannelMap.build(["Cz", "AUX"], ["uV", "g"]).scales.tolist() == [1e-6, 1.0]
    with pytest.raises(ValueError, match="units='microvolts'; expected one of uV, mV, V"):
        ChannelMap.build(["Cz"], None, units_override="microvolts")


def test_implausible_volts():
    rng = np.random.default_rng(0)
    eeg_volts = rng.standard_normal((8, 500)) * 2e-5 + 0.02  # DC offset is fine
    assert implausible_volts(eeg_volts) is None
    std = implausible_volts(eeg_volts * 1e6)  # the same data in microvolts
    assert std == pytest.approx(20.0, rel=0.2)


def test_epoch_raw_picks_by_name_from_a_larger_shuffled_recording():
    rng = np.random.default_rng(1)
    sf, n = 250.0, 2500
    eeg = ["Fz", "Cz", "Pz", "Oz"]
    x = rng.standard_normal((4, n)) * 1e-5
    clean = mne.io.RawArray(x, mne.create_info(eeg, sf, "eeg"), verbose="error")
    order = [2, 0, 3, 1]
    extra = rng.standard_normal((2, n)) * 1e-4
    names = ["EOG1", "pz", "FZ", "Oz", "EOG2", "cz"]
    data = np.vstack([extra[0], x[order[0]], x[order[1]], x[order[2]], extra[1], x[order[3]]])
    types = ["eog", "eeg", "eeg", "eeg", "eog", "eeg"]
    big = mne.io.RawArray(data, mne.create_info(names, sf, types), verbose="error")
    ann = mne.Annotations([2.0, 4.0, 6.0], 0, ["stim/a", "stim/b", "stim/c"])
    clean.set_annotations(ann)
    big.set_annotations(ann)
    spec = PreprocessingSpec(sfreq=sf, ch_names=eeg, tmin=0.0, tmax=0.4)
    a = epoch_raw(clean, spec, MarkerMapper())
    b = epoch_raw(big, spec, MarkerMapper())
    assert a.stim_ids == b.stim_ids == ["a", "b", "c"]
    np.testing.assert_array_equal(a.X, b.X)
    missing = PreprocessingSpec(sfreq=sf, ch_names=["Fz", "O1"], tmin=0.0, tmax=0.4)
    with pytest.raises(ValueError, match="the recording lacks 1 channel.*: O1"):
        epoch_raw(big, missing)
