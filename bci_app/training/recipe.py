"""The recipe of ``bci-app train``: which stage trains what, on which trials, into which
bundle file. The stages themselves live in one module each; all of them run through the
one fit loop (:mod:`bci_app.training.loop`).

Stages, in order (``--stages`` picks a subset; the others are loaded from the bundle):

1. ``encoder``  f_theta (:mod:`~bci_app.training.encoder`);
2. ``gan``      the saliency GAN on the frozen encoder's features (:mod:`~bci_app.training.gan`);
3. ``semantic`` M_s on the frozen encoder's features (:mod:`~bci_app.training.semantic`);
4. ``refiner``  the demo refiner (:mod:`~bci_app.training.demo_refiner`), or a reference to
   a pretrained one (another bundle's, or a diffusers model); then the demo image
   classifier (:mod:`~bci_app.training.classifier`), trained or referenced likewise;
5. ``baseline`` the linear decoder (:class:`bci_app.models.baseline.LinearBaseline`) on the
   same normalised windows, saved as ``baseline.safetensors``.

Every trained component sees the training split's trials or images only (validation is
used for selection, test never); ``config.json`` records it per component in
``training.component_images`` and their classes in ``training.component_classes``.
``[data] holdout_classes`` (``--holdout-classes``; THINGS-EEG2: its test concepts by
default) moves every trial of those classes to the test split, so that no component
trains or is selected on them (the zero-shot protocol, ``training.holdout_classes``); only
the image classifier, the judge of reconstructions, learns them, from rendered instances
that are none of the split's images. Checkpoints go to ``BUNDLE/checkpoints/<stage>``;
``--resume`` continues from them, skips finished stages and adds the requested stages to
an existing bundle without touching the others (its recorded settings and split are
reused, and a different split is an error).
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bci_app.config import TrainConfig, load_train_config, settings, to_dict
from bci_app.models import bundle as bundle_io
from bci_app.models.device import resolve_device
from bci_app.models.saliency_gan import condition_settings, gan_condition
from bci_app.training.data import images_tensor
from bci_app.training.encoder import encode

log = logging.getLogger(__name__)

STAGES = ("encoder", "gan", "semantic", "refiner", "baseline")
# the rendered-instance phase of the judge's held-out-class images (the refiner's UNet phases are 0-2)
JUDGE_RENDER_PHASE = 10
# the settings tables each stage reads (kept from the bundle's record when a stage is not rerun)
STAGE_TABLES = {"encoder": ("encoder",), "gan": ("gan",), "semantic": ("semantic",),
                "refiner": ("refiner", "classifier"), "baseline": ("baseline",)}
#: settings of the choices made after the stages (``select_sampling``, ``select_sharpening``):
#: any run that trains one of these stages makes the choices again with its own values
SELECTION_SETTINGS = {("refiner", "sample_grid"), ("semantic", "sample_temperature")}
SELECTION_STAGES = ("semantic", "refiner")


def sample_temperatures(value: float | list[float] | None) -> list[float]:
    """``[semantic] sample_temperature`` as a list of temperatures (each > 0)."""
    values = [] if value is None else list(value) if isinstance(value, list | tuple) else [value]
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
            raise ValueError(f"semantic.sample_temperature: expected a temperature > 0 or a list of them, "
                             f"got {value!r}")
        out.append(float(v))
    if value is not None and not out:
        raise ValueError("semantic.sample_temperature: an empty list; give a temperature > 0 or leave it out")
    return out


def resolve_settings(config: TrainConfig | dict[str, Any] | str | Path | None,
                     existing: dict[str, Any], resume: bool = False) -> TrainConfig:
    """The run's settings (a copy): a ``TrainConfig``/dict/TOML path as given; with none and
    ``resume``, what the existing bundle recorded (so that stages are added with the bundle's
    own settings and split); else the defaults."""
    if isinstance(config, TrainConfig | dict):
        return copy.deepcopy(settings(TrainConfig, config))
    if config is not None:
        return load_train_config(config)
    recorded = (existing.get("training") or {}).get("config") if resume else None
    return load_train_config(base=recorded) if recorded else TrainConfig()


def train_bundle(
    data: str | None,
    out: str | Path,
    config: TrainConfig | dict[str, Any] | str | Path | None = None,
    images_dir: str | Path | None = None,
    stages: list[str] | tuple[str, ...] = STAGES,
    epochs: int | None = None,
    device: str = "auto",
    seed: int | None = None,
    resume: bool = False,
    marker_pattern: str | None = None,
    progress: bool = True,
    holdout_classes: list[str | int] | None = None,
) -> Path:
    """Train the requested stages into the bundle directory ``out`` (see the module docstring);
    ``holdout_classes`` (names or indices) overrides ``[data] holdout_classes``."""
    stages = [s.strip() for s in stages if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ValueError(f"unknown stage(s) {bad}; allowed: {', '.join(STAGES)}")
    out = Path(out)
    existing = bundle_io.read_bundle_config(out) if (out / bundle_io.CONFIG_NAME).is_file() else {}
    cfg = resolve_settings(config, existing, resume)
    if seed is not None:
        cfg.train.seed = int(seed)
    if data:
        cfg.train.data = data
    if holdout_classes is not None:
        cfg.data.holdout_classes = list(holdout_classes)
    if epochs is not None:
        for s in ("encoder", "gan", "semantic"):
            if s in stages:
                getattr(cfg, s).epochs = int(epochs)
    _check_component_settings(cfg, stages)
    run = _Run(cfg, out, existing, stages, images_dir, device, resume, marker_pattern, progress)
    for stage in STAGES:
        if stage in stages and not (resume and stage in run.done):
            t0 = time.perf_counter()
            getattr(run, f"stage_{stage}")()
            run.times[stage] = round(time.perf_counter() - t0, 1)
            run.save(stage)
    if set(SELECTION_STAGES) & set(stages):
        t0 = time.perf_counter()
        chose_sampling = run.select_sampling()
        if run.select_sharpening() or chose_sampling:
            run.times["selection"] = round(time.perf_counter() - t0, 1)
            run.save()
    # the refiner stage's time includes the classifier's (also given on its own)
    run.times["total"] = round(sum(v for k, v in run.times.items() if k in STAGES or k in ("data", "selection")), 1)
    run.save()
    if not cfg.train.keep_checkpoints and all(s in run.done for s in STAGES):
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return out


def _judge_drawings(rec: Any, X: np.ndarray, y: np.ndarray, seeds: list[int]
                    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Reconstruct ``X`` (batches of 32, per-trial ``seeds``) and judge each drawing with the
    bundle's classifier (all-class top-1): right (its class is ``y``), shows the caption (its
    class is the caption mixture's most probable) and the images."""
    right, shows, images = [], [], []
    for a in range(0, len(X), 32):
        for r, t in zip(rec.reconstruct(X[a:a + 32], seeds=seeds[a:a + 32]), y[a:a + 32], strict=True):
            drawn = int(np.argmax(r.class_probs))
            right.append(drawn == int(t))
            shows.append(r.caption_probs is not None and drawn == int(np.argmax(r.caption_probs)))
            images.append(r.image)
    return np.asarray(right), np.asarray(shows), images


def _check_component_settings(cfg: TrainConfig, stages: list[str]) -> None:
    """Refuse bad semantic/refiner/classifier settings before hours of earlier stages run."""
    s = cfg.semantic
    sample_temperatures(s.sample_temperature)  # a clear error now, not after the earlier stages
    if "semantic" in stages and s.open_set and not (s.prototypes and s.captions == "label"):
        raise ValueError("semantic.open_set needs prototypes = true and captions = \"label\" (its candidates "
                         f"are the classes' label captions); got prototypes = {s.prototypes}, captions = {s.captions!r}")
    r = cfg.refiner
    if r.sample_grid and r.pretrained is not None:
        raise ValueError(f"refiner.sample_grid chooses the sampling defaults of a refiner the recipe trains; "
                         f"this one references {r.pretrained!r}'s refiner (remove sample_grid, or pass "
                         "--steps/--strength/--guidance at run time)")
    if "refiner" not in stages:
        return
    if r.type == "demo" and r.pretrained is None:
        from bci_app.training.demo_refiner import DemoRefinerConfig

        DemoRefinerConfig.from_dict(_demo_refiner_train_settings(r.train, r.sample_guidance))
    if cfg.classifier.train and cfg.classifier.pretrained is None:
        from bci_app.training.classifier import ClassifierConfig

        ClassifierConfig.from_dict(cfg.classifier.config)


def _demo_refiner_train_settings(train: dict[str, Any], guidance: float | None) -> dict[str, Any]:
    out = dict(train)
    if guidance is not None:
        out["guidance_scale"] = guidance  # checked by DemoRefinerConfig (needs caption dropout)
    return out


class _Run:
    """One ``train`` call: the data, the bundle being written and its record."""

    def __init__(self, cfg: TrainConfig, out: Path, existing: dict[str, Any], stages: list[str],
                 images_dir: str | Path | None, device: str, resume: bool, marker_pattern: str | None,
                 progress: bool) -> None:
        from bci_app.datasets import load_spec
        from bci_app.preprocessing import PreprocessingSpec, compute_norm, normalise

        self.cfg, self.out, self.resume, self.progress = cfg, out, resume, progress
        self.seed = int(cfg.train.seed)
        self.device = str(resolve_device(device if device not in (None, "auto") else cfg.train.device))
        out.mkdir(parents=True, exist_ok=True)
        rec = existing.get("training", {})
        self.done: set[str] = set(rec.get("stages_done", []))
        self.times: dict[str, float] = dict(rec.get("times_s", {}))
        self.metrics: dict[str, Any] = dict(rec.get("metrics", {}))
        t0 = time.perf_counter()
        d = cfg.data
        ds = load_spec(cfg.train.data, images_dir=images_dir, split_seed=d.split_seed, test_frac=d.test_frac,
                       val_frac=d.val_frac, marker_pattern=marker_pattern)
        self.times["data"] = round(time.perf_counter() - t0, 1)
        self.holdout = resolve_holdout(ds, d.holdout_classes)
        if self.holdout:
            ds.splits = hold_out(ds.splits, ds.labels, self.holdout)
            log.info("held out %d classes (%s): their %d trials are test trials, no component sees them",
                     len(self.holdout), ", ".join(ds.class_names[k] for k in self.holdout),
                     int(np.isin(ds.labels, self.holdout).sum()))
        log.info("data: %s", ds.summary())
        self.ds, self.tr, self.va = ds, ds.splits["train"], ds.splits["val"]
        if len(self.va) == 0:
            raise ValueError(f"{ds.source}: the validation split is empty; use more trials or a larger val_frac")
        split_images = {name: sorted({str(ds.stim_ids[i]) for i in idx}) for name, idx in ds.splits.items()}
        _check_same_split(existing, split_images, stages, out)
        class_counts = _check_class_counts(ds, self.tr, self.va, int(d.min_trials_per_class))
        spec = ds.spec
        if existing.get("spec", {}).get("norm_mean") is not None and "encoder" not in stages:
            spec = PreprocessingSpec.from_dict(existing["spec"])  # the trained encoder's normalisation
        else:
            mean, std = compute_norm(ds.X[self.tr])
            spec = PreprocessingSpec.from_dict({**spec.to_dict(), "norm_mean": mean.tolist(), "norm_std": std.tolist()})
        self.spec = spec
        self.X, self.y = normalise(ds.X, spec), ds.labels
        self.components: dict[str, Any] = {}
        self.feats: torch.Tensor | None = None
        self._base_va: float | None = None
        self.config: dict[str, Any] = {
            **{k: v for k, v in existing.items() if k not in ("format", "version")},
            "spec": spec.to_dict(),
            "n_times": int(self.X.shape[2]),
            "classes": list(ds.class_names),
            "training": {
                **rec,
                "data": cfg.train.data, "seed": self.seed, "images": str(images_dir) if images_dir else None,
                "config": _recorded_settings(rec.get("config"), cfg, stages),
                "data_summary": ds.summary(), "stages_done": sorted(self.done), "times_s": self.times,
                "metrics": self.metrics,
                # which images each split held: evaluate keeps test trials to images never trained on
                "split_images": split_images,
                "component_images": dict(rec.get("component_images") or {}),
                # the classes each component was trained on (the held-out ones are in none but the judge's)
                "component_classes": dict(rec.get("component_classes") or {}),
                "holdout_classes": [ds.class_names[k] for k in self.holdout],
                "pretrained": dict(rec.get("pretrained") or {}),
                # each optional modelling term kept or dropped on validation, against the baseline
                "selection": {**{k: v for k, v in (rec.get("selection") or {}).items() if k not in stages},
                              "data": class_counts},
            },
        }

    # ------------------------------------------------------------------ bookkeeping
    def save(self, stage: str | None = None) -> None:
        if stage:
            self.done.add(stage)
        self.config["training"]["stages_done"] = [s for s in STAGES if s in self.done]
        bundle_io.save_bundle(self.out, self.config, {k: v for k, v in self.components.items()
                                                      if isinstance(v, torch.nn.Module)})

    def checkpoint_dir(self, stage: str) -> Path:
        """This stage's checkpoints; cleared first unless resuming."""
        path = self.out / "checkpoints" / stage
        if not self.resume:
            for p in (path, path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")):
                shutil.rmtree(p, ignore_errors=True)
        return path

    def trained_on(self, component: str, images: list[str] | str, classes: list[str] | str | None = None) -> None:
        """Record the images ``component`` was trained on and their classes (default: the
        classes of this run's trials in those splits; for a string such as ``"external"``, it)."""
        rec = self.config["training"]
        rec["component_images"][component] = images
        if classes is None and isinstance(images, str):
            classes = images
        elif classes is None:
            idx = np.concatenate([self.ds.splits[s] for s in images if s in self.ds.splits] or [np.zeros(0, int)])
            classes = [self.ds.class_names[k] for k in np.unique(self.y[idx])]
        rec["component_classes"][component] = classes

    def select(self, stage: str, decisions: dict[str, Any]) -> None:
        """Record ``training.selection[stage]``: each optional term kept or dropped, with the
        validation figures that decided it."""
        sel = self.config["training"].setdefault("selection", {})
        sel[stage] = {**sel.get(stage, {}), **decisions}

    def _baseline_val_acc(self) -> float:
        """Validation accuracy of the linear baseline (the bundle's recipe) on this run's split."""
        if self._base_va is None:
            from bci_app.models.baseline import LinearBaseline

            base = LinearBaseline(bin_ms=self.cfg.baseline.bin_ms, sfreq=self.spec.sfreq).fit(
                self.X[self.tr], self.y[self.tr])
            self._base_va = base.score(self.X[self.va], self.y[self.va])
        return self._base_va

    def need(self, name: str) -> Any:
        if name in self.components:
            return self.components[name]
        try:
            return bundle_io.load_component(self.out, name)
        except (FileNotFoundError, KeyError) as e:
            raise RuntimeError(
                f"stage needs the {name!r} component, which {self.out} does not have ({e}); "
                f"train the earlier stages first (--stages encoder,...)"
            ) from None

    def features(self) -> torch.Tensor:
        if self.feats is None:
            self.feats = encode(self.need("encoder"), self.X)
        return self.feats

    def generator_condition(self, gan_cfg: dict[str, Any] | None, idx: Any = slice(None)) -> torch.Tensor:
        cond, temp, layout = condition_settings(gan_cfg)
        head = self.need("encoder_head") if cond == "posterior" else None
        with torch.no_grad():
            return gan_condition(self.features()[idx], head, cond, temp, layout)

    # ------------------------------------------------------------------ stages
    def stage_encoder(self) -> None:
        from bci_app.training.encoder import train_encoder

        ds, tr, va, ecfg = self.ds, self.tr, self.va, self.cfg.encoder
        layout = None
        if ecfg.layout and ds.layout is not None:
            from bci_app.stimuli import DemoStimulusSet

            layout = (ds.layout[tr], ds.layout[va], DemoStimulusSet.LAYOUT_NAMES)
        enc, head, m = train_encoder(self.X[tr], self.y[tr], self.X[va], self.y[va], ds.n_classes, ecfg,
                                     self.spec, self.checkpoint_dir("encoder"), self.seed, self.device,
                                     attributes=ds.class_attributes, layout=layout, progress=self.progress)
        selection = m.pop("selection", {}) or {}
        self.metrics["encoder"] = m
        self.components.update(encoder=enc, encoder_head=head)
        self.feats = None
        self.config["encoder"] = {"layout": m.get("layout")}
        self.trained_on("encoder", ["train"])
        # the floor: the plain linear read-out of the same windows, on the same validation trials
        from bci_app.training.encoder import head_accuracy

        base_va = self._baseline_val_acc()
        dec_va = head_accuracy(enc, head, self.X[va], self.y[va])
        below = dec_va < base_va - 0.5 / max(1, len(va))  # fewer right trials (not float rounding)
        selection["decoder"] = {"val_acc": round(dec_va, 6), "baseline_val_acc": round(base_va, 6),
                                "minus_baseline": round(dec_va - base_va, 4), "below_baseline": bool(below)}
        self.select("encoder", selection)
        if below:
            log.warning("encoder: the decoder's validation accuracy %.3f is BELOW the linear baseline's %.3f "
                        "on the same trials: this encoder knows less than a shrinkage LDA", dec_va, base_va)

    def stage_gan(self) -> None:
        from bci_app.training.gan import train_gan

        g = self.cfg.gan
        cond, temp, _ = condition_settings(asdict(g))
        layout = None
        if g.layout:
            layout = (self.config.get("encoder") or {}).get("layout")
            enc_sel = self.config["training"].get("selection", {}).get("encoder", {})
            dropped = enc_sel.get("layout", {}).get("kept") is False
            if layout is None and not dropped:
                raise ValueError(
                    "gan.layout = true needs an encoder trained with encoder.layout = true "
                    "(its layout outputs); retrain the encoder stage or set gan.layout = false"
                )
            if layout is None:  # the encoder's selection dropped the layout ridges
                self.select("gan", {"layout": {"kept": False,
                                               "reason": "the encoder's layout ridges were dropped on validation"}})
        gan_settings = {"condition": cond, "temperature": temp, "layout": layout}
        f = self.generator_condition(gan_settings)
        tr, va = self.tr, self.va
        G, D, m = train_gan(f[tr], images_tensor(self.ds, tr, g.resolution), f[va],
                            images_tensor(self.ds, va, g.resolution), g, self.checkpoint_dir("gan"),
                            self.seed + 1, self.device, layout_dims=3 if layout else 0, progress=self.progress)
        self.metrics["gan"] = m
        self.components.update(generator=G, discriminator=D)
        self.config["gan"] = {"resolution": g.resolution, "z_dim": g.z_dim, **gan_settings}
        self.trained_on("generator", ["train"])

    def stage_semantic(self) -> None:
        from bci_app.models.text import build_text_encoder
        from bci_app.training.data import caption_targets, load_free_captions
        from bci_app.training.semantic import train_semantic

        s, ds, tr, va = self.cfg.semantic, self.ds, self.tr, self.va
        te = build_text_encoder(s.text_encoder)
        if s.captions != "label":
            ds.captions_by_id = load_free_captions(s.captions)
        t_tr, class_emb = caption_targets(ds, tr, te, s.captions)
        t_va, _ = caption_targets(ds, va, te, s.captions)
        protos = class_emb if (class_emb is not None and s.prototypes) else None
        classes = np.arange(len(class_emb)) if class_emb is not None else None  # class of prototype k
        if s.open_set and protos is not None:  # it chooses among the training classes' captions only
            classes = np.unique(self.y[tr])
            protos = class_emb[classes]
        readout = None
        if s.logits_from == "features" and protos is not None:  # the encoder's read-out of those classes
            fc = self.need("encoder_head").fc
            readout = torch.nn.Linear(fc.in_features, len(classes))
            with torch.no_grad():
                readout.weight.copy_(fc.weight[torch.as_tensor(classes)])
                readout.bias.copy_(fc.bias[torch.as_tensor(classes)])
        f = self.features()
        head, m = train_semantic(f[tr], t_tr, f[va], t_va, s, protos, self.checkpoint_dir("semantic"),
                                 self.seed + 2, self.device, readout=readout, progress=self.progress)
        if readout is not None and head.n_prototypes == readout.out_features:
            self.select_mixture_logits(head, readout, f[va], classes)
        if head.open_set:  # then every class's caption is a candidate (prototype k = class k), held-out ones too
            head.set_candidates(class_emb)
        if s.sample_temperature is not None:
            if head.n_prototypes == 0:
                raise ValueError("semantic.sample_temperature needs the prototype head (prototypes = true)")
            head.set_temperature(sample_temperatures(s.sample_temperature)[0])
            m["sample_temperature"] = head.temperature
        if class_emb is not None:  # the caption the refiner is guided by, as evaluate's "caption" row reads it
            with torch.no_grad():
                if head.n_prototypes == len(class_emb):  # prototype k = class k: its most probable caption
                    picked, m["val_acc_rule"] = head.mixture_weights(f[va]).argmax(1), "most probable caption"
                else:
                    d = ((head(f[va])[:, None] - class_emb[None]) ** 2).flatten(2).mean(2)
                    picked, m["val_acc_rule"] = d.argmin(1), "class caption nearest to the predicted embedding"
                m["val_acc"] = float((picked.numpy() == self.y[va]).mean())
        self.metrics["semantic"] = m
        self.components["semantic"] = head
        self.config["semantic"] = {
            "text_encoder": te.config() if hasattr(te, "config") else dict(s.text_encoder),
            "captions": s.captions, "seq_len": int(t_tr.shape[1]), "dim": int(t_tr.shape[2]),
        }
        if head.open_set:
            self.config["semantic"]["open_set"] = {
                "candidates": "the label caption of every class (prototype k = class k), held-out classes "
                              "included: their text only, embedded by the text encoder after training",
                "trained_on": [ds.class_names[k] for k in np.unique(self.y[tr])]}
        self.trained_on("semantic", ["train"])

    def stage_refiner(self) -> None:
        from bci_app.training.pretrained import (
            EXTERNAL,
            bundle_reference,
            recorded_classes,
            reference_classifier,
            reference_refiner,
        )

        r, c = self.cfg.refiner, self.cfg.classifier
        te_cfg = (self.config.get("semantic") or {}).get("text_encoder")
        if r.pretrained is not None:
            entry, images = reference_refiner(r.pretrained, te_cfg, self.out)
            self.config["refiner"] = entry
            self.config["training"]["pretrained"]["refiner"] = bundle_reference(r.pretrained)
            self.trained_on("refiner", images, recorded_classes(r.pretrained, "refiner"))
        elif r.type != "demo":  # a pretrained diffusers model: the reference only (local_files_only)
            keys = ("type", "model", "tiny_vae", "resolution", "steps", "strength", "guidance_scale")
            self.config["refiner"] = {k: getattr(r, k) for k in keys if getattr(r, k) is not None}
            self.trained_on("refiner", EXTERNAL)
        else:
            self.config["refiner"], rendered = self._train_demo_refiner()
            self.trained_on("refiner", ["train", "rendered"] if rendered else ["train"])
            self.config["training"].setdefault("rendered_instances", {})["refiner"] = rendered
        if c.pretrained is not None:
            entry, images = reference_classifier(c.pretrained, self.out)
            self.config["classifier"] = entry
            self.config["training"]["pretrained"]["classifier"] = bundle_reference(c.pretrained)
            self.trained_on("classifier", images, recorded_classes(c.pretrained, "classifier"))
        elif c.train:
            t0 = time.perf_counter()
            self.config["classifier"], judge = self._train_classifier()
            self.times["classifier"] = round(time.perf_counter() - t0, 1)
            if judge is None:
                self.trained_on("classifier", ["train"])
            else:  # the judge also learnt the held-out classes, from rendered instances only
                self.config["training"].setdefault("rendered_instances", {})["classifier"] = judge
                names = self.ds.class_names
                classes = {names[k] for k in np.unique(self.y[self.tr])} | {names[k] for k in self.holdout}
                self.trained_on("classifier", ["train", "rendered"], [n for n in names if n in classes])

    def stage_baseline(self) -> None:
        from bci_app.models.baseline import LinearBaseline

        tr, va = self.tr, self.va
        t0 = time.perf_counter()
        base = LinearBaseline(bin_ms=self.cfg.baseline.bin_ms, sfreq=self.spec.sfreq).fit(self.X[tr], self.y[tr])
        self.metrics["baseline"] = {"val_acc": base.score(self.X[va], self.y[va]), "n_train": int(len(tr)),
                                    "n_val": int(len(va)), "seconds": round(time.perf_counter() - t0, 1)}
        base.save(self.out)
        self.config["baseline"] = {**base.settings(), "input": "windows normalised by the bundle's spec"}
        self.trained_on("baseline", ["train"])
        log.info("baseline: val acc %.3f", self.metrics["baseline"]["val_acc"])

    def select_mixture_logits(self, head: Any, readout: torch.nn.Linear, f_va: torch.Tensor,
                              classes: np.ndarray) -> None:
        """The caption mixture's weights start as the encoder's class read-out (prototype ``k``
        = class ``classes[k]``'s caption; an open-set head's query, :meth:`init_query`); their
        fine-tuning is kept only when the caption it picks is right more often on the
        validation trials (one-sided exact McNemar p < SELECT_P), else the read-out's start is
        restored: the caption never knows less than the decoder."""
        from bci_app.training.encoder import SELECT_P, gain_p

        y = self.y[self.va]
        head.eval()
        with torch.no_grad():
            tuned = classes[head.mixture_weights(f_va).argmax(1).numpy()] == y
            start = classes[readout(f_va).argmax(1).numpy()] == y
        p = gain_p(tuned, start)
        kept = p < SELECT_P
        if not kept and head.open_set:  # its caption is then the read-out's class again, exactly
            head.init_query(readout.weight, readout.bias)
        elif not kept:
            with torch.no_grad():
                head.logits.weight.copy_(readout.weight)
                head.logits.bias.copy_(readout.bias)
        self.select("semantic", {"mixture_logits": {
            "kept": bool(kept), "val_acc": float(tuned.mean()), "val_acc_readout": float(start.mean()),
            "n_val": int(len(y)), "p": round(p, 4),
            "rule": "fine-tuned caption mixture weights kept when their caption is right more often than the "
                    f"encoder read-out's on validation (one-sided exact McNemar p < {SELECT_P}); else the "
                    "read-out's weights"}})
        log.info("semantic: mixture fine-tuning %s (validation caption %.3f tuned, %.3f read-out)",
                 "kept" if kept else "dropped", tuned.mean(), start.mean())

    def _validation_drawings(self, rec: Any) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """The validation trials' windows, labels and per-trial seeds for judging drawings."""
        from bci_app.models.reconstructor import trial_seed

        va = self.va
        seeds = [trial_seed(str(self.ds.stim_ids[i]), int(i), self.seed) for i in va]
        return self.X[va], self.y[va], seeds

    def _bundle_judge(self) -> Any:
        """The bundle as saved so far, loaded to judge its drawings (None: no refiner or classifier)."""
        from bci_app.models.reconstructor import Reconstructor

        if not self.config.get("refiner") or not self.config.get("classifier"):
            return None
        rec = Reconstructor.from_bundle(self.out, device=self.device, seed=self.seed)
        return rec if rec.classifier is not None and rec.refiner is not None else None

    def select_sampling(self) -> bool:
        """Choose the refiner's sampling defaults among ``[refiner] sample_grid`` on the
        validation trials (all-class top-1 of the drawings by the bundle's classifier; ties:
        SSIM to the seen images at 64 px), write them to the saved refiner and record the table
        in ``training.selection.sampling``. Returns False when there is nothing to choose."""
        from bci_app.models.ssim import ssim_batch

        grid = list(self.cfg.refiner.sample_grid or [])
        rec = self._bundle_judge() if grid and not (self.config.get("refiner") or {}).get("bundle") else None
        if rec is None:
            return False
        X, y, seeds = self._validation_drawings(rec)
        seen = self.ds.images(self.va, 64)
        rows = []
        for setting in grid:
            try:
                steps, strength, guidance = (float(v) for v in str(setting).split(":"))
            except ValueError:
                raise ValueError(f"refiner.sample_grid entry {setting!r}: expected 'steps:strength:guidance', "
                                 "e.g. '4:0.5:1.25'") from None
            rec.steps, rec.strength, rec.guidance = rec.refiner.validate_sampling(int(steps), strength, guidance)
            right, _, imgs = _judge_drawings(rec, X, y, seeds)
            rows.append({"setting": str(setting), "val_drawing_acc": float(np.mean(right)),
                         "val_ssim": float(ssim_batch(seen, np.stack(imgs), 64).mean())})
            log.info("sampling %s: validation drawings %.3f, SSIM %.3f", setting, rows[-1]["val_drawing_acc"],
                     rows[-1]["val_ssim"])
        best = max(rows, key=lambda r: (round(r["val_drawing_acc"], 6), r["val_ssim"]))
        steps, strength, guidance = best["setting"].split(":")
        ref_file = self.out / self.config["refiner"]["path"] / "refiner_config.json"
        ref = json.loads(ref_file.read_text())
        ref.update(steps=int(float(steps)), strength=float(strength), guidance_scale=float(guidance))
        ref_file.write_text(json.dumps(ref, indent=2))
        self.select("sampling", {"chosen": best["setting"], "rows": rows, "n_val": int(len(y)),
                                 "rule": "refiner.sample_grid setting with the best all-class top-1 of the "
                                         "validation drawings (the bundle's classifier; ties: SSIM at 64 px)"})
        return True

    def select_sharpening(self) -> bool:
        """Choose the semantic head's prototype sharpening (``[semantic] sample_temperature``,
        one temperature or several) on the validation trials, judged by the bundle's image
        classifier: the temperature whose drawings show the caption's class most often is
        kept when they show it more often than without sharpening (temperature 1) and are
        right no less often. Needs a refiner and a classifier (else nothing to judge: returns
        False). Rewrites the semantic component with the chosen temperature.

        Sharpening rescales the caption mixture's logits, so it never changes which caption is
        the most probable: what it can change is whether the drawing shows that caption
        (a flat mixture of many captions guides the refiner towards none of them). That is
        tested on every validation trial (one-sided exact McNemar), not only on the trials
        whose caption is right, which a small calibration session has too few of to show
        anything. How flat the mixture is depends on the data (the read-out's logits on a
        low-SNR cap span a fraction of what they span on the demo's), hence the choice among
        several temperatures."""
        from bci_app.training.encoder import SELECT_P, gain_p

        s = self.cfg.semantic
        rec = self._bundle_judge() if s.sample_temperature is not None else None
        if rec is None:
            return False
        va = self.va
        X, y, seeds = self._validation_drawings(rec)

        right, keeps = {}, {}
        for temp in (*sample_temperatures(s.sample_temperature), 1.0):
            if temp in right:
                continue
            rec.semantic.set_temperature(temp)
            right[temp], keeps[temp], _ = _judge_drawings(rec, X, y, seeds)
        grid = [t for t in right if t != 1.0] or [1.0]
        t_sharp = max(grid, key=lambda t: (int(keeps[t].sum()), int(right[t].sum()), t))  # ties: the milder
        sharp, flat = float(right[t_sharp].mean()), float(right[1.0].mean())
        p = gain_p(keeps[t_sharp], keeps[1.0])
        kept = p < SELECT_P and int(right[t_sharp].sum()) >= int(right[1.0].sum())
        head = self.need("semantic")
        head.set_temperature(t_sharp if kept else 1.0)
        self.components["semantic"] = head
        self.select("semantic", {"sharpening": {
            "kept": bool(kept), "temperature": t_sharp,
            "val_drawing_shows_caption": float(keeps[t_sharp].mean()),
            "val_drawing_shows_caption_without": float(keeps[1.0].mean()),
            "val_drawing_acc": sharp, "val_drawing_acc_without": flat, "n_val": int(len(va)), "p": round(p, 4),
            "grid": [{"temperature": t, "val_drawing_shows_caption": float(keeps[t].mean()),
                      "val_drawing_acc": float(right[t].mean())} for t in right],
            "rule": "the temperature whose validation drawings show the caption's most probable class most "
                    "often (the bundle's classifier, all-class top-1), kept when they show it more often than "
                    f"without sharpening (one-sided exact McNemar p < {SELECT_P} over all validation trials) "
                    "and are right no less often; sharpening never changes which caption is the most probable"}})
        self.metrics.setdefault("semantic", {})["sample_temperature"] = head.temperature
        log.info("semantic: sharpening at %g %s (validation drawings show the caption %.3f with, %.3f without; "
                 "right %.3f with, %.3f without)", t_sharp, "kept" if kept else "dropped",
                 keeps[t_sharp].mean(), keeps[1.0].mean(), sharp, flat)
        return True

    # ------------------------------------------------------------------ image side
    def _demo_images(self, split: str, what: str) -> Any:
        """The demo set's images of ``split`` (a :class:`~bci_app.training.data.StimulusSubset`)."""
        from bci_app.stimuli import DemoStimulusSet
        from bci_app.training.data import split_stimuli

        return split_stimuli(DemoStimulusSet(), self.config["training"]["split_images"][split], split, what)

    def _train_demo_refiner(self) -> dict[str, Any]:
        from bci_app.models.text import build_text_encoder
        from bci_app.training.demo_refiner import train_demo_refiner

        r = self.cfg.refiner
        stimuli = self._demo_images("train", "refiner")
        te = build_text_encoder((self.config.get("semantic") or {}).get("text_encoder")
                                or {"type": "minilm", "seq_len": 16})
        tcfg = _demo_refiner_train_settings(r.train, r.sample_guidance)
        tcfg.setdefault("checkpoint_dir", str(self.checkpoint_dir("refiner")))
        if tcfg.get("saliency_targets") == "decoded" and not (self.config.get("gan") or {}).get("layout"):
            # the GAN draws no decoded layout (its selection dropped it): map targets are the seen images
            tcfg["saliency_targets"] = "seen"
            self.select("refiner", {"decoded_targets": {
                "kept": False, "reason": "the GAN has no decoded layout (dropped on validation); "
                                         "saliency_targets = 'seen'"}})
        sal_pairs = None
        if float(tcfg.get("p_saliency", 0) or 0) > 0:
            sal_pairs = _training_saliency_maps(self.need("generator"),
                                                self.generator_condition(self.config.get("gan"), self.tr),
                                                [str(self.ds.stim_ids[i]) for i in self.tr], self.seed)
        refiner = train_demo_refiner(stimuli, te, tcfg, progress=self.progress, device=self.device,
                                     saliency_maps=sal_pairs)
        # sampling defaults may differ from the timesteps training focused on (chosen on validation)
        refiner.steps, refiner.strength, _ = refiner.validate_sampling(r.sample_steps, r.sample_strength)
        dtype = torch.float16 if r.save_dtype == "float16" else None
        refiner.save(self.out / "refiner", weights_dtype=dtype)  # fp16 on disk halves the bundle size
        return {"path": "refiner", "type": "demo"}, (refiner.extra or {}).get("rendered_instances")

    def _train_classifier(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The demo image classifier (judges reconstructions): training-split images, measured
        on the validation split's images; with held-out classes also new rendered instances of
        those (never a split's image: the judge must know them to judge their drawings, the
        model never sees them). Returns its bundle entry and the record of those instances."""
        from bci_app.stimuli import DemoStimulusSet
        from bci_app.training.classifier import train_image_classifier
        from bci_app.training.demo_refiner import RenderedInstances

        train_ids = self._demo_images("train", "classifier").stim_ids
        stimuli = DemoStimulusSet()
        val_ids = [s for s in self.config["training"]["split_images"]["val"] if s in stimuli]
        extra = judge = None
        if self.holdout:
            names = stimuli.class_names()
            held = [names.index(self.ds.class_names[k]) for k in self.holdout]
            rendered = RenderedInstances(stimuli, held, 64, render_seed=self.seed, upright_targets=False)
            per_class = max(1, round(len(train_ids) / max(1, len(np.unique(self.y[self.tr])))))
            images, _, labels = rendered.batch(per_class * len(held), JUDGE_RENDER_PHASE, 0)
            extra = (images, labels)
            judge = {**rendered.record(), "phase": JUDGE_RENDER_PHASE, "n": len(labels),
                     "purpose": "the judge (image classifier) learns the held-out classes from these "
                                "instances, none of them a split's image; no model component sees them"}
        clf, metrics = train_image_classifier(stimuli, self.cfg.classifier.config, progress=self.progress,
                                              device=self.device, stim_ids=train_ids, val_ids=val_ids,
                                              checkpoint_dir=self.checkpoint_dir("classifier"), extra=extra)
        clf.save(self.out / "classifier", extra=metrics)
        return {"path": "classifier", "metrics": metrics}, judge


def resolve_holdout(ds: Any, requested: list[str | int] | None) -> list[int]:
    """The class indices ``[data] holdout_classes`` names (class names of ``ds`` or int
    indices); ``None``: the data set's own zero-shot classes (THINGS-EEG2: its test
    concepts), if any. ``ValueError`` naming an unknown class, or when nothing would be
    left to train on."""
    names = list(ds.class_names)
    if requested is None:
        requested = list(getattr(ds, "zero_shot_classes", None) or [])
    found, bad = set(), []
    for c in requested:
        index = c if isinstance(c, int) and not isinstance(c, bool) else None
        if index is None and str(c).strip() in names:
            index = names.index(str(c).strip())
        if index is None or not 0 <= index < len(names):
            bad.append(c)
        else:
            found.add(index)
    if bad:
        raise ValueError(
            f"{ds.source}: held-out class(es) {bad} are not classes of the data; expected class names "
            f"(e.g. {names[:3]}) or integer indices 0..{len(names) - 1}"
        )
    left = set(np.unique(ds.labels[ds.splits["train"]]).tolist()) - found
    if found and not left:
        raise ValueError(f"{ds.source}: holding out {len(found)} classes leaves no class to train on; "
                         "hold out fewer ([data] holdout_classes / --holdout-classes)")
    return sorted(found)


def hold_out(splits: dict[str, np.ndarray], labels: np.ndarray, classes: list[int]) -> dict[str, np.ndarray]:
    """``splits`` with every trial of ``classes`` moved from training and validation to test:
    no component trains or is selected on them (still a split by image: an image has one class)."""
    held = np.isin(labels, classes)
    out = {k: np.asarray(v, dtype=np.int64)[~held[v]] for k, v in splits.items() if k != "test"}
    moved = [np.asarray(v, dtype=np.int64)[held[v]] for k, v in splits.items() if k != "test"]
    out["test"] = np.sort(np.concatenate([np.asarray(splits.get("test", []), dtype=np.int64), *moved]))
    return out


def _check_class_counts(ds: Any, tr: np.ndarray, va: np.ndarray, min_trials: int) -> dict[str, Any]:
    """Refuse a split whose training trials cannot teach every class the decoder is checked on:
    a class with fewer than ``min_trials`` training trials, or one that has validation trials but
    none in training (``min_trials = 0``: go on, with a warning). Returns the record."""
    names = list(ds.class_names)
    n_tr = np.bincount(ds.labels[tr], minlength=len(names))
    n_va = np.bincount(ds.labels[va], minlength=len(names))
    only_val = [names[k] for k in np.flatnonzero((n_tr == 0) & (n_va > 0))]
    few = [f"{names[k]} ({n_tr[k]})" for k in np.flatnonzero((n_tr > 0) & (n_tr < max(min_trials, 5)))]
    record = {"classes_trained": int((n_tr > 0).sum()), "min_training_trials": int(n_tr[n_tr > 0].min()),
              "min_trials_per_class": int(min_trials), "classes_with_few_trials": few,
              "classes_only_in_validation": only_val}
    if only_val or few:
        parts = []
        if few:
            parts.append(f"{len(few)} class(es) with fewer than {max(min_trials, 5)} training trials: "
                         + ", ".join(few[:8]) + (" ..." if len(few) > 8 else ""))
        if only_val:
            parts.append(f"{len(only_val)} class(es) only in the validation split (never decodable): "
                         + ", ".join(only_val[:8]) + (" ..." if len(only_val) > 8 else ""))
        msg = f"{ds.source}: " + "; ".join(parts)
        if min_trials > 0:
            raise ValueError(
                msg + f". Every class needs >= {min_trials} training trials: record more trials of it, "
                "leave its stimuli out of the session, or set [data] min_trials_per_class = 0 to train "
                "anyway (recorded in the bundle)"
            )
        record["decision"] = "trained anyway ([data] min_trials_per_class = 0)"
        log.warning("%s; training anyway ([data] min_trials_per_class = 0)", msg)
    return record


def _check_same_split(existing: dict[str, Any], split_images: dict[str, list[str]], stages: list[str],
                      out: Path) -> None:
    """Adding stages to a bundle: its other components must share this run's split."""
    rec = existing.get("training", {})
    kept = [s for s in rec.get("stages_done", []) if s not in stages]
    old = rec.get("split_images")
    if not kept or old is None:
        return
    for name in ("train", "val", "test"):
        a, b = set(old.get(name, [])), set(split_images.get(name, []))
        if a != b:
            raise ValueError(
                f"{out} holds components ({', '.join(kept)}) trained on another split: its {name!r} split has "
                f"{len(a)} images, this run's {len(b)} ({len(a ^ b)} differ); use the data spec and [data] "
                f"split settings the bundle records (training.data = {rec.get('data')!r}, "
                f"training.config.data = {(rec.get('config') or {}).get('data')}) or retrain every stage"
            )


def _recorded_settings(old: dict[str, Any] | None, cfg: TrainConfig, stages: list[str]) -> dict[str, Any]:
    """The settings to record: this run's for the stages it trains, the bundle's own for the others."""
    new = to_dict(cfg)
    if not old:
        return new
    merged = {**old, "train": new["train"], "data": new["data"]}
    for stage in stages:
        for table in STAGE_TABLES[stage]:
            merged[table] = new[table]
    for table in new:
        merged.setdefault(table, new[table])
    if set(SELECTION_STAGES) & set(stages):  # the choices were made again, with these settings
        for table, key in SELECTION_SETTINGS:
            if key in new.get(table, {}):
                merged[table] = {**merged.get(table, {}), key: new[table][key]}
    return merged


@torch.no_grad()
def _training_saliency_maps(G: Any, cond: torch.Tensor, stim_ids: list[str], seed: int
                            ) -> tuple[torch.Tensor, list[str], np.ndarray | None]:
    """The GAN's maps for the training trials (``cond``: their generator conditions), i.e.
    what the refiner will be given, with the stimulus id of each trial and, for a generator
    conditioned on a layout, the decoded layout (x, y, size) it drew; seeded latents."""
    z = torch.randn(len(cond), G.z_dim, generator=torch.Generator().manual_seed(seed + 3))
    G.eval()
    maps = torch.cat([G(z[i : i + 256], cond[i : i + 256]) for i in range(0, len(cond), 256)])
    k = int(getattr(G, "layout_dims", 0))
    return maps, stim_ids, (cond[:, -k:].double().numpy() if k else None)
