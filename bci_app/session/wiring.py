"""The wiring of a session's command-line arguments to objects: the EEG and marker sources
named by ``--source``, the stimulus set named by ``--images``, and the bundle on the
configured device (the LSL sources themselves are ``bci_app.acquisition.sources``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bci_app.config import InferenceConfig, load_config
from bci_app.stimuli import DemoStimulusSet, ImageFolderSet


def inference_config(args: Any) -> InferenceConfig:
    cfg = load_config(getattr(args, "config", None)).inference
    if getattr(args, "device", None):
        cfg.device = args.device
    if getattr(args, "steps", None) is not None:
        cfg.steps = args.steps
    if getattr(args, "strength", None) is not None:
        cfg.strength = args.strength
    return cfg


def load_reconstructor(bundle: str, cfg: InferenceConfig):
    """The bundle on the configured device (fp16 on GPU); torch's CPU threads are set by the
    pipeline while it runs (:mod:`bci_app.session.realtime`)."""
    from bci_app.models.reconstructor import Reconstructor

    rec = Reconstructor.from_bundle(bundle, device=cfg.device, dtype=cfg.dtype,
                                    steps=cfg.steps, strength=cfg.strength)
    return rec


def parse_board_params(items: Sequence[str]) -> dict[str, str]:
    """``["serial_port=/dev/ttyUSB0", "timeout=5"]`` -> ``{"serial_port": ..., "timeout": "5"}``.

    BrainFlowSource converts the values to the parameter's type."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"--board-param {item!r}: expected KEY=VALUE, e.g. serial_port=/dev/ttyUSB0"
            )
        out[key.strip()] = value.strip()
    return out


def model_channels(spec: Any, photodiode: str | None = None) -> list[str]:
    """The channels a session reads from the stream: the spec's, then ``--photodiode``'s light
    sensor (the epocher takes a chunk's last row as the sensor); ``ValueError`` when the
    sensor is one of the spec's channels."""
    names = list(spec.ch_names)
    if photodiode is None:
        return names
    if photodiode.lower() in (n.lower() for n in names):
        raise ValueError(
            f"--photodiode {photodiode!r} is one of the {len(names)} EEG channels the bundle "
            "reads; expected a separate light-sensor channel of the stream"
        )
    return [*names, photodiode]


def source_options(args: Any, spec: Any = None) -> dict[str, Any]:
    """Keyword arguments of :func:`open_sources` from the command line, the config file's
    ``[acquisition]`` table and the consumer's :class:`PreprocessingSpec` (None: take the
    stream as it is, e.g. for a calibration recording); with ``--photodiode`` the consumer
    reads its channel after the spec's (:func:`model_channels`)."""
    acq = load_config(getattr(args, "config", None)).acquisition
    flags = parse_board_params(getattr(args, "board_param", None) or [])
    board: dict[str, Any] = {}
    if str(getattr(args, "source", "")).startswith("brainflow"):
        board = {**acq.brainflow_params, **flags}
    elif flags:
        raise ValueError(
            f"--board-param {sorted(flags)} given but --source is {getattr(args, 'source', None)!r}; "
            "board parameters apply to --source brainflow:BOARD only"
        )
    return {
        "ch_names": model_channels(spec, getattr(args, "photodiode", None)) if spec is not None else None,
        "sfreq": float(spec.sfreq) if spec is not None else None,
        "units": getattr(args, "units", None),
        "board_params": board or None,
        "dejitter": not getattr(args, "no_dejitter", False),
        "trigger_channel": getattr(args, "trigger_channel", None),
    }


def open_sources(
    spec: str,
    markers_name: str | None = None,
    *,
    ch_names: Sequence[str] | None = None,
    sfreq: float | None = None,
    units: str | None = None,
    board_params: dict[str, Any] | None = None,
    dejitter: bool = True,
    trigger_channel: str | None = None,
) -> tuple[Any, Any]:
    """The EEG source and the marker source named by ``--source`` / ``--markers``.

    Parameters
    ----------
    spec : str
        ``lsl[:NAME]`` (a name finds the stream whatever its type; without one, the first
        stream of type EEG) or ``brainflow:BOARD`` (a board id or name, e.g. ``synthetic``).
    markers_name : str, optional
        LSL marker stream name; without one, the first stream of type ``Markers`` (for
        BrainFlow: the board's own marker channel).
    ch_names, sfreq : optional
        What the consumer needs: channels picked by name (any order, case-insensitive),
        higher rates resampled causally, lower ones an error. None takes the stream as it is.
    units : ``"uV"``, ``"mV"``, ``"V"`` or None
        Overrides the stream's channel units.
    board_params : dict, optional
        ``BrainFlowInputParams`` fields (config ``brainflow_params`` and ``--board-param``).
    dejitter : bool
        Re-fit the EEG timestamps against the sample count (default; ``--no-dejitter``
        turns it off).
    trigger_channel : str, optional
        ``--trigger-channel``: the markers are the codes of this channel of the EEG stream
        (:class:`~bci_app.acquisition.triggers.TriggerMarkers`, a second inlet on the same
        stream reading that channel unscaled) instead of a marker stream.

    Nothing is connected yet: the pipeline (or the recorder) connects both.
    """
    from bci_app.acquisition.markers import LSLMarkerSource

    kind, _, rest = spec.partition(":")
    if kind == "lsl":
        from bci_app.acquisition.sources import LSLSource

        if board_params:
            raise ValueError(
                f"board parameters {sorted(board_params)} were given but --source is {spec!r}; "
                "they apply to brainflow:BOARD only"
            )
        source = LSLSource(name=rest or None, ch_names=ch_names, sfreq=sfreq, units=units,
                           dejitter=dejitter)
        if trigger_channel is not None:
            from bci_app.acquisition.triggers import TriggerMarkers

            if markers_name:
                raise ValueError(
                    f"--markers {markers_name!r} and --trigger-channel {trigger_channel!r} both "
                    "name where the markers come from; give one"
                )
            # the codes as they are: no unit scaling, no resampling
            trig = LSLSource(name=rest or None, ch_names=[trigger_channel], units="V",
                             dejitter=dejitter)
            return source, TriggerMarkers(trig, trigger_channel)
        return source, LSLMarkerSource(name=markers_name)
    if kind == "brainflow":
        from bci_app.acquisition.brainflow_source import BrainFlowSource

        if not rest:
            raise ValueError(
                "--source brainflow needs a board, e.g. brainflow:SYNTHETIC_BOARD or brainflow:-1"
            )
        if trigger_channel is not None:
            raise ValueError(
                f"--trigger-channel {trigger_channel!r} applies to LSL streams; a BrainFlow "
                "board's markers come from its marker channel (or --markers NAME)"
            )
        source = BrainFlowSource(rest, board_params, ch_names=ch_names, sfreq=sfreq, units=units,
                                 dejitter=dejitter)
        markers = LSLMarkerSource(name=markers_name) if markers_name else source
        return source, markers
    raise ValueError(f"--source must be 'lsl[:NAME]' or 'brainflow:BOARD', got {spec!r}")


def marker_mapper_for(args: Any, stimuli: Any = None) -> Any:
    """The marker -> stimulus id mapping of ``--event-map`` / ``--marker-pattern``.

    With an event map, its stimulus ids are checked against ``stimuli`` (when given) and
    markers it does not know go through ``--marker-pattern`` when that is given too.
    """
    from bci_app.stimuli import EventMap, MarkerMapper

    pattern = getattr(args, "marker_pattern", None)
    path = getattr(args, "event_map", None)
    if path is None:
        return MarkerMapper(pattern) if pattern else MarkerMapper()
    return EventMap.load(path, stimuli).with_fallback(MarkerMapper(pattern) if pattern else None)


def stimuli_for(args: Any) -> Any:
    if getattr(args, "images", None):
        return ImageFolderSet(args.images)
    return DemoStimulusSet()
