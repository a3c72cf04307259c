"""Stream discovery: a name finds a stream whatever its type; misses list the network.
And: the app's process loads one liblsl (pylsl's), never mne-lsl's."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from pylsl import IRREGULAR_RATE, StreamInfo, cf_float32, cf_string

from bci_app.acquisition import LSLMarkerSource, LSLSource
from bci_app.acquisition.discovery import Query, StreamNotFound, find_streams
from tests.acquisition.lsl_helpers import eeg_outlet, marker_outlet
from tests.conftest import unique_stream_id


def test_query_rule():
    eeg = StreamInfo("amp", "eeg", 8, 500.0, cf_float32, "amp-1")
    exg = StreamInfo("amp2", "ExG", 8, 500.0, cf_float32, "amp-2")
    mk = StreamInfo("mk", "markers", 1, IRREGULAR_RATE, cf_string, "mk-1")
    # a name (or a source id) finds the stream whatever its type
    assert Query("amp", "EEG").matches(eeg)
    assert Query("amp2", "EEG").matches(exg)
    assert Query(source_id="amp-2", stype="EEG").matches(exg)
    assert not Query("amp", "EEG").matches(exg)
    assert not Query("amp", source_id="amp-2").matches(eeg)
    # without one, the type filters, case-insensitively
    assert Query(stype="EEG").matches(eeg)
    assert not Query(stype="EEG").matches(exg)
    assert Query(stype="Markers").matches(mk)
    assert Query().matches(exg)
    assert str(Query("amp", "EEG")) == "LSL stream name='amp'"
    assert str(Query(stype="EEG")) == "LSL stream type='EEG' (any case)"


def test_name_finds_a_stream_of_any_type(stream_id):
    name, sid = stream_id
    out = eeg_outlet(name, sid, ["Fz", "Cz"], 250.0, stype="ExG")
    mname, msid = unique_stream_id("mk")
    mk = marker_outlet(mname, msid)
    src = LSLSource(name, timeout=5)  # default type "EEG": ignored when a name is given
    markers = LSLMarkerSource(mname, stype="annotations", timeout=5)
    try:
        src.connect()
        markers.connect()
        assert src.ch_names == ["Fz", "Cz"] and src.sfreq == 250.0
        assert src.source_id == sid and markers.source_id == msid
        assert markers.encoding == "string"
    finally:
        src.disconnect()
        markers.disconnect()
        del out, mk


def test_a_miss_lists_what_is_on_the_network(stream_id):
    name, sid = stream_id
    out = eeg_outlet(name, sid, ["Fz", "Cz", "Pz"], 512.0, stype="eeg")
    try:
        with pytest.raises(StreamNotFound) as info:
            LSLSource(f"{name}-typo", timeout=1.0).connect()
    finally:
        del out
    msg = str(info.value)
    assert msg.startswith(
        f"no LSL stream name='{name}-typo' found within 1 s; streams on the network"
    )
    assert f"'{name}' (type 'eeg', 3 channels, 512 Hz, source_id '{sid}', host '" in msg
    assert "pass one of these names" in msg
    assert isinstance(info.value, RuntimeError)


def test_find_streams_returns_as_soon_as_one_fits(stream_id):
    import time

    name, sid = stream_id
    out = eeg_outlet(name, sid, ["Fz"], 100.0)
    try:
        t0 = time.monotonic()
        found = find_streams(Query(name), timeout=10.0)
        assert time.monotonic() - t0 < 5.0
        assert [f.source_id() for f in found] == [sid]
    finally:
        del out


_ONE_LIBLSL = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import pylsl
    from bci_app.acquisition import Acquisition, Epocher, LSLMarkerSource, LSLSource, SessionPlayer
    import bci_app.acquisition.brainflow_source, bci_app.acquisition.bench
    import bci_app.session.wiring

    name, mname = sys.argv[1:3]
    info = pylsl.StreamInfo(name, "EEG", 2, 250.0, pylsl.cf_float32, name + "-sid")
    info.set_channel_labels(["Cz", "Pz"])
    info.set_channel_units("microvolts")
    out = pylsl.StreamOutlet(info)
    mk = pylsl.StreamOutlet(pylsl.StreamInfo(mname, "Markers", 1, 0.0, pylsl.cf_string, mname))
    src, markers = LSLSource(name, timeout=5), LSLMarkerSource(mname, timeout=5)
    src.connect()
    markers.connect()
    out.wait_for_consumers(5)
    mk.wait_for_consumers(5)
    out.push_chunk(np.ones((50, 2), dtype=np.float32))
    mk.push_sample(["stim/a"])
    n, got, deadline = 0, [], time.monotonic() + 10
    while (n < 50 or not got) and time.monotonic() < deadline:
        n += src.read()[1].size
        got += markers.pull()
        time.sleep(0.01)
    libs = sorted({line.split()[-1] for line in open("/proc/self/maps") if "liblsl" in line})
    print(json.dumps({"n": n, "markers": got, "libs": libs,
                      "mne_lsl": sorted(m for m in sys.modules if m.startswith("mne_lsl"))}))
    """
)


def test_one_liblsl_in_the_process():
    """A fresh interpreter (other tests here load mne-lsl themselves) connects and reads."""
    name, _ = unique_stream_id("one-lib")
    mname, _ = unique_stream_id("one-lib-mk")
    run = subprocess.run(
        [sys.executable, "-c", _ONE_LIBLSL, name, mname],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["n"] == 50 and [m for m, _ in result["markers"]] == ["stim/a"]
    assert len(result["libs"]) == 1 and "pylsl" in result["libs"][0], result["libs"]
    assert result["mne_lsl"] == []
