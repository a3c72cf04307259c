"""Write BrainVision, EDF and BDF files by hand (pybv/edfio are not installable here).

Both formats are short text/ASCII headers plus binary samples; the writers cover what the
tests need: BrainVision float32 in microvolts with ``Stimulus/S N`` markers, and EDF with
16-bit samples (EEG in microvolts over the data's range) and a ``Status`` trigger channel
(digital = physical, so codes are exact).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_brainvision(path: str | Path, data: np.ndarray, ch_names: list[str], sfreq: float,
                      markers: list[tuple[int, int]]) -> Path:
    """``path`` (.vhdr) + .vmrk + .eeg; ``data[C, n]`` in volts; ``markers`` = (sample, code)."""
    path = Path(path)
    stem = path.stem
    eeg, vmrk = path.with_suffix(".eeg"), path.with_suffix(".vmrk")
    (np.asarray(data, dtype=np.float64) * 1e6).T.astype("<f4").tofile(eeg)
    chans = "\n".join(f"Ch{i + 1}={n},,1,µV" for i, n in enumerate(ch_names))
    path.write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n\n"
        "[Common Infos]\nCodepage=UTF-8\n"
        f"DataFile={stem}.eeg\nMarkerFile={stem}.vmrk\nDataFormat=BINARY\n"
        f"DataOrientation=MULTIPLEXED\nNumberOfChannels={len(ch_names)}\n"
        f"SamplingInterval={1e6 / sfreq:g}\n\n"
        "[Binary Infos]\nBinaryFormat=IEEE_FLOAT_32\n\n"
        f"[Channel Infos]\n{chans}\n",
        encoding="utf-8",
    )
    mk = ["Mk1=New Segment,,1,1,0"]
    for i, (k, code) in enumerate(markers, start=2):
        mk.append(f"Mk{i}=Stimulus,S{code:3d},{int(k) + 1},1,0")
    vmrk.write_text(
        "Brain Vision Data Exchange Marker File, Version 1.0\n\n"
        f"[Common Infos]\nCodepage=UTF-8\nDataFile={stem}.eeg\n\n"
        "[Marker Infos]\n" + "\n".join(mk) + "\n",
        encoding="utf-8",
    )
    return path


def _field(value, width: int) -> bytes:
    text = str(value)[:width].ljust(width)
    return text.encode("ascii")


def write_edf(path: str | Path, data: np.ndarray, ch_names: list[str], sfreq: float,
              trigger: np.ndarray | None = None, trigger_name: str = "Status") -> Path:
    """EDF (``.edf``: 16-bit samples) or BDF (``.bdf``: BioSemi's 24-bit variant) with
    ``data[C, n]`` (volts) as EEG in microvolts, plus an optional trigger channel of integer
    codes. One data record per second (``sfreq`` must be an integer)."""
    path = Path(path)
    bdf = path.suffix.lower() == ".bdf"
    dlo, dhi = (-(1 << 23), (1 << 23) - 1) if bdf else (-32768, 32767)
    n_rec_samp = int(round(sfreq))
    uv = np.asarray(data, dtype=np.float64) * 1e6
    n = uv.shape[1]
    n_rec = int(np.ceil(n / n_rec_samp))
    pad = n_rec * n_rec_samp - n
    sigs, labels, dims, pmin, pmax, dmin, dmax = [], [], [], [], [], [], []
    for i, name in enumerate(ch_names):
        x = uv[i]
        lo, hi = float(np.floor(x.min())) - 1.0, float(np.ceil(x.max())) + 1.0  # header-exact
        d = np.round((x - lo) / (hi - lo) * (dhi - dlo) + dlo).astype(np.int64)
        sigs.append(np.clip(d, dlo, dhi))
        labels.append(name)
        dims.append("uV")
        pmin.append(int(lo))
        pmax.append(int(hi))
        dmin.append(dlo)
        dmax.append(dhi)
    if trigger is not None:
        sigs.append(np.asarray(trigger, dtype=np.int64))
        labels.append(trigger_name)
        dims.append("")
        pmin.append(dlo)
        pmax.append(dhi)
        dmin.append(dlo)
        dmax.append(dhi)
    ns = len(sigs)
    hdr = b"".join([
        b"\xffBIOSEMI" if bdf else _field("0", 8), _field("X X X X", 80), _field("Startdate 01-JAN-2020 X X X", 80),
        _field("01.01.20", 8), _field("00.00.00", 8), _field(256 * (ns + 1), 8),
        _field("24BIT" if bdf else "", 44),
        _field(n_rec, 8), _field(1, 8), _field(ns, 4),
    ])
    hdr += b"".join(_field(x, 16) for x in labels)
    hdr += b"".join(_field("", 80) for _ in labels)
    hdr += b"".join(_field(x, 8) for x in dims)
    hdr += b"".join(_field(x, 8) for x in pmin)
    hdr += b"".join(_field(x, 8) for x in pmax)
    hdr += b"".join(_field(x, 8) for x in dmin)
    hdr += b"".join(_field(x, 8) for x in dmax)
    hdr += b"".join(_field("", 80) for _ in labels)
    hdr += b"".join(_field(n_rec_samp, 8) for _ in labels)
    hdr += b"".join(_field("", 32) for _ in labels)
    assert len(hdr) == 256 * (ns + 1)
    arr = np.stack([np.concatenate([s, np.zeros(pad, dtype=np.int64)]) for s in sigs])
    # records: [n_rec, ns, n_rec_samp]
    recs = arr.reshape(ns, n_rec, n_rec_samp).transpose(1, 0, 2)
    if bdf:  # little-endian 24-bit two's complement
        u = (recs.astype(np.int64) & 0xFFFFFF).astype("<u4")
        body = u.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        body = recs.astype("<i2").tobytes()
    with open(path, "wb") as fh:
        fh.write(hdr)
        fh.write(body)
    return path

