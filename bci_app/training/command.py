"""``bci-app train``: the command line's entry point into :func:`bci_app.training.recipe.train_bundle`."""

from __future__ import annotations

import json
from typing import Any

from bci_app.models import bundle as bundle_io
from bci_app.training.recipe import STAGES, train_bundle
from bci_app.training.summary import summary_lines


def parse_stages(text: str | None) -> list[str]:
    """``--stages a,b`` as a list (``None`` or empty: every stage)."""
    stages = [s.strip() for s in str(text or "").split(",") if s.strip()]
    return stages or list(STAGES)


def parse_holdout(text: str | None) -> list[str | int] | None:
    """``--holdout-classes A,B,3`` as class names and indices (digits: an index); ``none``: no
    class held out; ``None``: the recipe's ``[data] holdout_classes``."""
    if text is None:
        return None
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    if [s.lower() for s in items] == ["none"]:
        return []
    return [int(s) if s.isdigit() else s for s in items]


def run_train(args: Any) -> int:
    """Entry point of ``bci-app train`` (argparse namespace from ``bci_app.cli``)."""
    out = train_bundle(
        data=args.data, out=args.out, config=args.config, images_dir=args.images,
        stages=parse_stages(getattr(args, "stages", None)), epochs=args.epochs, device=args.device,
        seed=args.seed, resume=bool(args.resume), marker_pattern=getattr(args, "marker_pattern", None),
        holdout_classes=parse_holdout(getattr(args, "holdout_classes", None)),
    )
    cfg = bundle_io.read_bundle_config(out)
    for line in summary_lines(out, cfg):
        print(line)
    if getattr(args, "json", False):
        print(json.dumps({"bundle": str(out), "metrics": cfg["training"]["metrics"],
                          "selection": cfg["training"].get("selection"),
                          "times_s": cfg["training"]["times_s"],
                          "component_images": cfg["training"].get("component_images"),
                          "holdout_classes": cfg["training"].get("holdout_classes")}, indent=2))
    return 0
