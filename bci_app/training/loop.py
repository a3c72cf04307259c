"""The one fit loop of every training stage.

:class:`FitLoop` runs ``units`` (epochs or optimiser steps) of a stage's ``train_unit``
callable with, in one place:

- seeding (:func:`seed_everything`, accelerate's ``set_seed``: Python, NumPy, torch);
- Hugging Face ``accelerate.Accelerator`` (``accelerate launch -m bci_app.cli train``
  runs the stages data-parallel); models, optimisers, schedulers and data loaders go
  through :meth:`FitLoop.prepare`;
- tqdm progress (one bar per stage, off when ``progress=False`` or not the main process);
- checkpoint/resume: every ``checkpoint_every`` units ``accelerator.save_state`` writes the
  prepared models (safetensors), optimisers, schedulers and RNG states into
  ``checkpoint_dir``, and the loop's own state (units done, history, early-stopping state,
  the best weights, tracked generators/EMA) goes beside it as JSON + safetensors - no
  pickles of our own. A loop built on a directory that holds a checkpoint resumes from it
  (``accelerator.load_state``), and gives the same weights as an uninterrupted run;
- early stopping on a validation metric (``validate``: higher or lower is better, with
  ``patience``) and selection of the best weights (restored into the models at the end).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

STATE_JSON = "loop_state.json"
STATE_TENSORS = "loop_tensors.safetensors"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) the way accelerate does."""
    from accelerate.utils import set_seed

    set_seed(int(seed))


def make_accelerator(device: str = "cpu"):
    """An ``accelerate.Accelerator`` on CUDA when ``device`` names it, else the CPU."""
    from accelerate import Accelerator

    return Accelerator(cpu=not str(device).startswith("cuda"))


class EarlyStopping:
    """Best value of a validation metric and how many validations since it improved."""

    def __init__(self, patience: int | None = None, mode: str = "max") -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.patience, self.mode = patience, mode
        self.best: float | None = None
        self.bad = 0

    def step(self, value: float) -> bool:
        """Record ``value``; True when it is a new best."""
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if better:
            self.best, self.bad = float(value), 0
        else:
            self.bad += 1
        return better

    @property
    def stop(self) -> bool:
        return self.patience is not None and self.bad >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad = state["best"], int(state["bad"])


class GeneratorState:
    """Checkpointable view of a ``torch.Generator`` (data order, latents)."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["state"])


@dataclass
class FitResult:
    """What a loop did: per-unit history, best validation value, units done in total."""

    history: list[dict[str, float]] = field(default_factory=list)
    best: float | None = None
    units_done: int = 0
    resumed_from: int = 0
    start_value: float | None = None  # the validation value of the start (``validate_start``)


def read_progress(checkpoint_dir: str | Path) -> dict[str, Any] | None:
    """The loop state a checkpoint holds (``units_done``, ``history``, ``stopper``), or None."""
    p = Path(checkpoint_dir) / STATE_JSON
    if not p.is_file():
        return None
    return json.loads(p.read_text())["loop"]


class FitLoop:
    """One stage's training loop (see the module docstring).

    Parameters
    ----------
    name : str
        Stage name (progress bar, logs).
    units : int
        Epochs or steps to run in total.
    seed : int, optional
        Seeds everything when given (do it before building the models); ``None`` leaves
        the RNGs as they are (a later phase of a seeded run).
    device : str
    checkpoint_dir : path, optional
        Where checkpoints go; an existing checkpoint there is resumed from.
    checkpoint_every : int
        Units between checkpoints (the last unit is always saved).
    monitor, mode, patience :
        Name of the validation metric, whether higher (``"max"``) or lower is better, and
        validations without improvement before stopping (``None``: never stop early).
    validate_every : int
        Units between validations.
    unit : str
        ``"epoch"`` or ``"step"`` (history key and progress label).
    """

    def __init__(self, name: str, units: int, *, seed: int | None = None, device: str = "cpu",
                 checkpoint_dir: str | Path | None = None, checkpoint_every: int = 1,
                 monitor: str = "val", mode: str = "max", patience: int | None = None,
                 validate_every: int = 1, unit: str = "epoch", progress: bool = True) -> None:
        if int(units) < 0:
            raise ValueError(f"{name}: units must be >= 0, got {units}")
        if int(checkpoint_every) < 1 or int(validate_every) < 1:
            raise ValueError(
                f"{name}: checkpoint_every and validate_every must be >= 1, got "
                f"{checkpoint_every} and {validate_every}"
            )
        if seed is not None:
            seed_everything(seed)
        self.name, self.units, self.unit = name, int(units), unit
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every, self.validate_every = int(checkpoint_every), int(validate_every)
        self.monitor, self.progress = monitor, progress
        self.stopper = EarlyStopping(patience, mode)
        self.accelerator = make_accelerator(device)
        self._tracked: dict[str, Any] = {}
        self._best_of: dict[str, torch.nn.Module] = {}
        self._best_state: dict[str, dict[str, torch.Tensor]] | None = None
        self.history: list[dict[str, float]] = []
        self.done = 0
        self.start_value: float | None = None

    # ------------------------------------------------------------------ set-up
    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def prepare(self, *objects: Any) -> Any:
        """``accelerator.prepare``: models, optimisers, schedulers, data loaders (checkpointed)."""
        return self.accelerator.prepare(*objects)

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return self.accelerator.unwrap_model(model)

    def track(self, name: str, obj: Any) -> None:
        """Checkpoint ``obj`` too (anything with ``state_dict``/``load_state_dict`` of tensors
        and plain values: an EMA, a :class:`GeneratorState`)."""
        if isinstance(obj, torch.Generator):
            obj = GeneratorState(obj)
        self._tracked[name] = obj

    def select_best(self, **modules: torch.nn.Module) -> None:
        """Keep the weights of ``modules`` at the best validation value and restore them at the end."""
        self._best_of = {k: self.unwrap(m) for k, m in modules.items()}

    # ------------------------------------------------------------------ checkpoints
    def _snapshot(self) -> None:
        self._best_state = {k: {n: t.detach().cpu().clone() for n, t in m.state_dict().items()}
                            for k, m in self._best_of.items()}

    def save_checkpoint(self) -> Path | None:
        """Write the checkpoint (atomically: into a temporary directory, then renamed).

        Every process calls ``accelerator.save_state`` (each writes its RNG state); the main
        process writes the loop's state and renames."""
        if self.checkpoint_dir is None:
            return None
        acc = self.accelerator
        final = self.checkpoint_dir
        tmp, old = final.with_name(final.name + ".tmp"), final.with_name(final.name + ".old")
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            loop = {"units_done": self.done, "history": self.history, "stopper": self.stopper.state_dict(),
                    "start_value": self.start_value}
            extra = {"tracked": {k: o.state_dict() for k, o in self._tracked.items()}, "best": self._best_state}
            tensors: dict[str, torch.Tensor] = {}
            (tmp / STATE_JSON).write_text(json.dumps({"loop": loop, "extra": _to_json(extra, tensors)}))
            from safetensors.torch import save_file

            save_file(tensors, str(tmp / STATE_TENSORS))
            shutil.rmtree(old, ignore_errors=True)
            if final.exists():
                final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def _find_checkpoint(self) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        for cand in (self.checkpoint_dir, self.checkpoint_dir.with_name(self.checkpoint_dir.name + ".old")):
            if (cand / STATE_JSON).is_file():
                return cand
        return None

    def _resume(self) -> bool:
        path = self._find_checkpoint()
        if path is None:
            return False
        from safetensors.torch import load_file

        self.accelerator.load_state(str(path))
        data = json.loads((path / STATE_JSON).read_text())
        tensors = load_file(str(path / STATE_TENSORS))
        extra = _from_json(data["extra"], tensors)
        loop = data["loop"]
        self.done, self.history = int(loop["units_done"]), list(loop["history"])
        self.stopper.load_state_dict(loop["stopper"])
        self.start_value = loop.get("start_value")
        for k, obj in self._tracked.items():
            if k not in extra["tracked"]:
                raise RuntimeError(
                    f"{self.name}: checkpoint {path} has no state for {k!r}; it was written by other "
                    "code or settings - delete it to start the stage afresh"
                )
            obj.load_state_dict(extra["tracked"][k])
        self._best_state = extra["best"]
        log.info("%s: resumed from %s after %d %ss", self.name, path, self.done, self.unit)
        return True

    # ------------------------------------------------------------------ run
    def run(self, train_unit: Callable[[int], dict[str, float]],
            validate: Callable[[], float] | None = None, validate_start: bool = False) -> FitResult:
        """Run the remaining units; returns the :class:`FitResult` (best weights restored).

        ``train_unit(i)`` trains unit ``i`` and returns metrics for the history;
        ``validate()`` returns the monitored value. ``validate_start``: the untrained
        (e.g. closed-form) start is a candidate for selection too.
        """
        resumed = self._resume()
        start = self.done
        if not resumed and validate is not None and validate_start:
            self.start_value = float(validate())
            if self.stopper.step(self.start_value):
                self._snapshot()
        bar = self._bar(range(start, self.units))
        for i in bar:
            if self.stopper.stop:
                log.info("%s: early stop after %d %ss (best %s %.4g)", self.name, i, self.unit,
                         self.monitor, self.stopper.best)
                break
            row: dict[str, float] = {self.unit: i, **{k: float(v) for k, v in train_unit(i).items()}}
            if validate is not None and ((i + 1) % self.validate_every == 0 or i + 1 == self.units):
                value = float(validate())
                row[self.monitor] = value
                if self.stopper.step(value):
                    self._snapshot()
            self.history.append(row)
            self.done = i + 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k != self.unit})
            if (i + 1) % self.checkpoint_every == 0 or i + 1 == self.units:
                self.save_checkpoint()
        if self._best_state is not None:
            for k, m in self._best_of.items():
                m.load_state_dict(self._best_state[k])
        return FitResult(self.history, self.stopper.best, self.done, start, self.start_value)

    def _bar(self, it: Iterable[int]):
        from tqdm.auto import tqdm

        return tqdm(it, desc=self.name, total=self.units, initial=self.done, dynamic_ncols=True, leave=False,
                    disable=not (self.progress and self.accelerator.is_local_main_process))


# ----------------------------------------------------------------------------- state files
def _to_json(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Plain JSON with every tensor moved into ``tensors`` (a safetensors file) by key."""
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        bad = [k for k in obj if not isinstance(k, str)]
        if bad:  # optimiser-style int keys: keep them typed
            return {"__intkeys__": {str(k): _to_json(v, tensors) for k, v in obj.items()}}
        return {k: _to_json(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_to_json(v, tensors) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__}; expected tensors and plain values")


def _from_json(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__intkeys__"}:
            return {int(k): _from_json(v, tensors) for k, v in obj["__intkeys__"].items()}
        return {k: _from_json(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_json(v, tensors) for v in obj]
    return obj
