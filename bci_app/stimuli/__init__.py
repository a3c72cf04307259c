"""Stimulus sets (the procedural demo set, a folder of images) shared by the presenter,
the virtual subject and the models."""

from __future__ import annotations

from bci_app.stimuli.demo_set import COLOURS, SHAPES, DemoStimulusSet, StimulusParams
from bci_app.stimuli.event_map import EventMap, load_event_map, trigger_code
from bci_app.stimuli.image_folder import IMAGE_SUFFIXES, ImageFolderSet, read_image
from bci_app.stimuli.markers import MarkerMapper, format_marker
from bci_app.stimuli.schedule import Schedule, make_schedule

__all__ = [
    "COLOURS",
    "SHAPES",
    "DemoStimulusSet",
    "StimulusParams",
    "IMAGE_SUFFIXES",
    "ImageFolderSet",
    "read_image",
    "EventMap",
    "load_event_map",
    "trigger_code",
    "MarkerMapper",
    "format_marker",
    "Schedule",
    "make_schedule",
]
