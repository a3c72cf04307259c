"""EEG (and its own markers) from a BrainFlow board, on the LSL clock.

BrainFlow stamps samples with Unix time (``time.time()``). They are mapped onto the LSL
clock with an offset measured by bracketing ``time.time()`` between two
``local_clock()`` reads (the tightest of many brackets wins), re-measured every
``resync_seconds``. Board timestamps jitter (the synthetic board stamps samples as its
thread wakes up), so the source re-fits them against the sample count
(:class:`~bci_app.acquisition.dejitter.Dejitter`, with the board's package-number channel
as the counter: it decides what was lost, and the stamps jump across it, where the
acquisition thread counts it);
``dejitter=False`` (``--no-dejitter``) keeps the board's stamps as they are. Markers
placed with ``BoardShim.insert_marker(value)`` land in the board's marker channel on one
sample; they come out of :meth:`pull` with that
sample's timestamp, so the epocher puts them on exactly that sample.

Channel names come from the board description (``BoardShim.get_eeg_names``) where the
board has them; BrainFlow's EEG is in microvolts and comes out in volts. Board parameters
(``BrainFlowInputParams``: serial port, file, master board...) come from the config's
``[acquisition] brainflow_params`` and ``--board-param KEY=VALUE``.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from bci_app.acquisition.conform import StreamConformer
from bci_app.acquisition.markers import numeric_marker
from bci_app.acquisition.sources import check_stream_shape
from bci_app.preprocessing.channels import UNIT_CHOICES

logger = logging.getLogger(__name__)


def unix_to_lsl_offset(n: int = 50) -> float:
    """``time.time() - local_clock()`` from the tightest of ``n`` brackets (s)."""
    from pylsl import local_clock

    best, offset = np.inf, 0.0
    for _ in range(n):
        a = local_clock()
        u = time.time()
        b = local_clock()
        if b - a < best:
            best, offset = b - a, u - 0.5 * (a + b)
    return offset


def board_id_from(board) -> int:
    """A BrainFlow board id from an int, a numeric string or a name like ``"synthetic"``."""
    from brainflow.board_shim import BoardIds

    if isinstance(board, int):
        return board
    s = str(board).strip()
    if s.lstrip("-").isdigit():
        return int(s)
    key = s.upper().replace("-", "_")
    for cand in (key, key + "_BOARD"):
        if cand in BoardIds.__members__:
            return int(BoardIds[cand].value)
    raise ValueError(
        f"unknown BrainFlow board {board!r}; expected a board id or a name such as "
        "'synthetic', 'playback_file', 'cyton' (see brainflow.board_shim.BoardIds)"
    )


def input_params(params: dict | None):
    """A ``BrainFlowInputParams`` from ``{field: value}``; string values (from the command
    line) are converted to the field's type, and ``master_board`` may be a board name."""
    from brainflow.board_shim import BrainFlowInputParams

    p = BrainFlowInputParams()
    allowed = sorted(a for a in vars(p) if not a.startswith("_"))
    for key, value in (params or {}).items():
        if key not in allowed:
            raise ValueError(
                f"unknown BrainFlow board parameter {key!r}; allowed: {', '.join(allowed)}"
            )
        if key == "master_board":
            value = board_id_from(value)
        elif isinstance(getattr(p, key), int) and not isinstance(value, int):
            try:
                value = int(str(value).strip())
            except ValueError:
                raise ValueError(
                    f"BrainFlow board parameter {key}={value!r}: expected an integer"
                ) from None
        elif isinstance(getattr(p, key), str):
            value = str(value)
        setattr(p, key, value)
    return p


def board_channel_names(board_id: int, n_eeg: int) -> list[str]:
    """The board's EEG channel names (``get_eeg_names``), or ``EEG000``... when it has none."""
    from brainflow.board_shim import BoardShim

    try:
        names = [n.strip() for n in BoardShim.get_eeg_names(board_id)]
    except Exception:  # BrainFlowError: this board describes no names
        names = []
    if len(names) != n_eeg or not all(names):
        names = [f"EEG{i:03d}" for i in range(n_eeg)]
    return names


class BrainFlowSource:
    """A BrainFlow board as an ``EEGSource`` and a marker source.

    Parameters
    ----------
    board_id : int | str
        e.g. ``BoardIds.SYNTHETIC_BOARD`` (-1), ``"synthetic"``, ``"playback_file"``.
    params : dict
        Fields of ``BrainFlowInputParams`` (serial_port, file, master_board, ip_address...);
        strings are converted to the field's type (see :func:`input_params`).
    ch_names : list of str, optional
        Channels the consumer needs, picked by name from the board's EEG names and
        ``extra_rows`` (case-insensitively); None keeps them all.
    sfreq : float, optional
        Rate the consumer needs: higher board rates are resampled causally, lower ones are
        an error naming both.
    units : ``"uV"``, ``"mV"``, ``"V"`` or None
        Overrides BrainFlow's microvolts for the EEG rows.
    n_channels : int, optional
        Exact channel count to insist on.
    extra_rows : tuple of str
        Other rows to append as channels after the EEG ones, by their name in the
        board description (``"package_num"``, ``"marker"``); handy for checks.
    marker_table : dict, optional
        Marker value -> marker string (default: the value itself, ``"3"``).
    dejitter : bool
        Re-fit the board's timestamps against the sample count (default) or keep them.
    """

    def __init__(
        self,
        board_id=-1,
        params: dict | None = None,
        *,
        ch_names: list[str] | None = None,
        sfreq: float | None = None,
        units: str | None = None,
        n_channels: int | None = None,
        extra_rows: tuple[str, ...] = (),
        marker_table: dict | None = None,
        resync_seconds: float = 30.0,
        streamer_params: str = "",
        ring_size: int = 450000,
        dejitter: bool = True,
    ) -> None:
        self.board_id = board_id_from(board_id)
        self.params = dict(params or {})
        input_params(self.params)  # unknown fields and bad values fail here, not at connect
        self.expected_ch_names = list(ch_names) if ch_names is not None else None
        if units is not None and units not in UNIT_CHOICES:
            raise ValueError(f"units={units!r}; expected one of {', '.join(UNIT_CHOICES)}")
        self.units = units
        self.conformer: StreamConformer | None = None
        self.expected_n_channels = n_channels
        self.expected_sfreq = sfreq
        self.extra_rows = tuple(extra_rows)
        self.marker_table = marker_table
        self.resync_seconds = float(resync_seconds)
        self.streamer_params = streamer_params
        self.ring_size = int(ring_size)
        self.state = "disconnected"
        self.ch_names: list[str] = []
        self.sfreq = 0.0
        self._board = None
        self._markers: list[tuple[str, float]] = []
        self._n = 0  # samples delivered
        self.dejitter = bool(dejitter)
        self.dejitterer = None
        self._last_pkg: int | None = None
        self._offset = 0.0
        self._next_sync = 0.0
        self._info = None

    # -- connection ----------------------------------------------------------------------
    def connect(self) -> None:
        """Describe the board, check it against the consumer's needs and start streaming."""
        from brainflow.board_shim import BoardShim

        desc = BoardShim.get_board_descr(self.board_id)
        eeg = list(desc.get("eeg_channels", []))
        names = board_channel_names(self.board_id, len(eeg))
        units: list[str | None] = ["uV"] * len(eeg)
        sfreq = float(desc["sampling_rate"])
        rows = list(eeg)
        for r in self.extra_rows:
            key = f"{r}_channel"
            if key not in desc:
                raise ValueError(
                    f"board {desc.get('name')} has no {key!r} row; rows available: "
                    f"{sorted(k for k in desc if k.endswith('_channel'))}"
                )
            rows.append(int(desc[key]))
            names.append(r)
            units.append("none")
        what = f"BrainFlow board {desc.get('name')} (id {self.board_id})"
        check_stream_shape(what, len(rows), sfreq, self.expected_n_channels, self.expected_sfreq)
        if self.units is not None:  # the override applies to the EEG rows only
            units = [self.units] * len(eeg) + units[len(eeg) :]
        conformer = StreamConformer(
            names, sfreq, units, want_ch_names=self.expected_ch_names,
            want_sfreq=self.expected_sfreq, what=what,
        )  # fmt: skip
        self._board = BoardShim(self.board_id, input_params(self.params))
        self._board.prepare_session()
        self._board.start_stream(self.ring_size, self.streamer_params)
        self._rows = rows
        self._ts_row = int(desc["timestamp_channel"])
        self._marker_row = int(desc["marker_channel"]) if "marker_channel" in desc else None
        self._pkg_row = int(desc["package_num_channel"]) if "package_num_channel" in desc else None
        self._n_eeg = len(eeg)
        self.board_ch_names = names
        self.board_sfreq = sfreq
        self.conformer = conformer
        if self.dejitter:
            from bci_app.acquisition.dejitter import Dejitter

            self.dejitterer = Dejitter(sfreq)
        self._n = 0
        self._last_pkg = None
        self.ch_names = list(conformer.ch_names)
        self.sfreq = conformer.sfreq
        self.desc = desc
        self._resync()
        self.state = "connected"
        logger.info("BrainFlow board %s streaming at %s Hz", desc.get("name"), sfreq)

    @property
    def delay(self) -> float:
        """Seconds of latency added by resampling (0 when the board's rate is used as is)."""
        return self.conformer.delay if self.conformer is not None else 0.0

    def disconnect(self) -> None:
        if self._board is not None:
            try:
                self._board.stop_stream()
            except Exception:
                pass
            try:
                self._board.release_session()
            except Exception:
                pass
        self._board = None
        self.state = "disconnected"

    @property
    def board(self):
        """The ``BoardShim`` (e.g. for ``insert_marker``)."""
        return self._board

    def insert_marker(self, value: float) -> None:
        if self._board is None:
            raise RuntimeError("the BrainFlow source is not connected; call connect() first")
        self._board.insert_marker(float(value))

    @property
    def info(self):
        if self._info is None:
            import mne

            extra = set(self.extra_rows)
            types = ["misc" if n in extra else "eeg" for n in self.ch_names]
            self._info = mne.create_info(self.ch_names, self.sfreq, types)
        return self._info

    def _resync(self) -> None:
        self._offset = unix_to_lsl_offset()
        self._next_sync = time.monotonic() + self.resync_seconds

    # -- data ----------------------------------------------------------------------------
    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """New samples ``(data[C, n] volts (EEG rows), LSL timestamps[n])``."""
        empty = np.zeros((len(self.ch_names), 0)), np.zeros(0)
        if self._board is None:
            return empty
        if time.monotonic() > self._next_sync:
            self._resync()
        raw = self._board.get_board_data()
        n = raw.shape[1]
        if n == 0:
            return empty
        lsl_ts = raw[self._ts_row] - self._offset
        if self._pkg_row is not None:
            pkg = raw[self._pkg_row].astype(np.int64)
            prev = self._last_pkg if self._last_pkg is not None else (pkg[0] - 1)
            d = np.diff(np.concatenate([[prev], pkg])) % 256  # 8-bit package counter
            lost = np.where(d == 0, 0, d - 1)
            self._last_pkg = int(pkg[-1])
            k = self._n + np.arange(n) + np.cumsum(lost)
        else:
            k = self._n + np.arange(n)
        # the package counter decides what was lost; the fit gives the stamps
        ts = self.dejitterer.update(lsl_ts, counts=k) if self.dejitterer is not None else lsl_ts
        self._n = int(k[-1]) + 1
        if self._marker_row is not None:
            mk = raw[self._marker_row]
            for i in np.nonzero(mk)[0]:
                self._markers.append((numeric_marker(mk[i], self.marker_table), float(ts[i])))
        # BrainFlow's EEG is in microvolts: the conformer scales it to volts (and picks, resamples)
        return self.conformer.process(raw[self._rows], ts)

    def pull(self) -> list[tuple[str, float]]:
        """Markers read from the board's marker channel since the last call."""
        out, self._markers = self._markers, []
        return out
