"""Run a small model's forward pass through a traced graph instead of eager Python.

On 2 CPU cores a call of the demo refiner's UNet (4.6 M parameters on a 16 x 16 latent)
spends about a third of its time in Python: diffusers' module tree, its per-call shape
checks and hooks. ``torch.jit.trace`` records the aten operations of one call and replays
them without that Python, with the same weights (the graph holds the module's own
parameter tensors) and the same numbers.

A trace is only valid for the input signature it was recorded with (the shapes select
branches in diffusers' code), so :class:`TracedCall` keeps one graph per signature
(shapes, dtypes, device and the weights' storage), records it on the first call with
that signature and checks its output against the eager call it replaces. Whatever goes
wrong (tracing raises, the outputs disagree, a future torch without ``torch.jit.trace``)
is logged once and that signature runs eagerly: slower, never different.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

#: relative tolerance of the traced-vs-eager check, by dtype (float16/bfloat16 kernels
#: may reorder sums differently in the two paths)
_RTOL = {torch.float32: 1e-4, torch.float64: 1e-7}
_RTOL_LOW = 2e-2


class _Adapter(torch.nn.Module):
    """``forward(*tensors) = fn(module, *tensors)``: a module to trace with positional
    tensor inputs and one tensor output."""

    def __init__(self, module: torch.nn.Module, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.module = module
        self.fn = fn

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.fn(self.module, *inputs)


class TracedCall:
    """``fn(module, *tensors) -> tensor`` through one traced graph per input signature.

    Parameters
    ----------
    module : torch.nn.Module
        The model (its parameters are shared with the graphs, not copied).
    fn : callable
        ``fn(module, *tensors)`` returning one tensor, e.g. ``lambda m, z, t, e:
        m(z, t, encoder_hidden_states=e, return_dict=False)[0]``.
    name : str
        For the log.
    enabled : bool
        ``False``: always eager (the reference path).

    Graphs are recorded only for inference (module in eval mode, autograd off); any other
    call runs eagerly. ``stats`` counts traced and eager calls and the signatures that
    fell back, so a benchmark can say which path it measured.
    """

    def __init__(self, module: torch.nn.Module, fn: Callable[..., torch.Tensor], name: str = "model",
                 enabled: bool = True) -> None:
        self.module = module
        self.fn = fn
        self.name = name
        self.enabled = bool(enabled)
        self._graphs: dict[tuple, torch.jit.ScriptModule | None] = {}  # None: runs eagerly
        self._counts = {"traced_calls": 0, "eager_calls": 0}

    @property
    def stats(self) -> dict[str, int]:
        """Calls so far (traced, eager) and the signatures held: graphs, and fallbacks
        (signatures that run eagerly because tracing failed or disagreed)."""
        fallbacks = sum(g is None for g in self._graphs.values())
        return {**self._counts, "graphs": len(self._graphs) - fallbacks, "fallbacks": fallbacks}

    def clear(self) -> None:
        """Forget every graph (after the module moved or changed dtype)."""
        self._graphs.clear()

    def _key(self, inputs: tuple[torch.Tensor, ...]) -> tuple:
        p = next(self.module.parameters(), None)
        weights = (p.data_ptr(), p.dtype, p.device) if p is not None else None
        return tuple((tuple(x.shape), x.dtype, x.device) for x in inputs) + (weights,)

    def _eager(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        self._counts["eager_calls"] += 1
        return self.fn(self.module, *inputs)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if not self.enabled or self.module.training or torch.is_grad_enabled():
            return self._eager(inputs)
        key = self._key(inputs)
        if key in self._graphs:
            graph = self._graphs[key]
            if graph is None:
                return self._eager(inputs)
            self._counts["traced_calls"] += 1
            return graph(*inputs)
        return self._record(key, inputs)

    def _record(self, key: tuple, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        reference = self._eager(inputs)
        shapes = [tuple(x.shape) for x in inputs]
        try:
            with warnings.catch_warnings():
                # torch.jit.trace is deprecated in favour of torch.compile, whose first call
                # compiles for minutes on 2 CPU cores; diffusers' shape checks warn while tracing
                warnings.simplefilter("ignore")
                graph = torch.jit.trace(_Adapter(self.module, self.fn).eval(), inputs, check_trace=False)
            out = graph(*inputs)
        except Exception as err:  # noqa: BLE001 - any failure means: run this signature eagerly
            log.warning("%s: tracing for inputs %s failed (%s: %s); running it eagerly",
                        self.name, shapes, type(err).__name__, err)
            self._graphs[key] = None
            return reference
        rtol = _RTOL.get(reference.dtype, _RTOL_LOW)
        scale = float(reference.abs().max()) if reference.numel() else 0.0
        if out.shape != reference.shape or not torch.allclose(out, reference, rtol=rtol, atol=rtol * (1.0 + scale)):
            diff = (out - reference).abs().max().item() if out.shape == reference.shape else "shape"
            log.warning("%s: traced graph for inputs %s disagrees with the eager call (max |diff| %s); "
                        "running it eagerly", self.name, shapes, diff)
            self._graphs[key] = None
            return reference
        self._graphs[key] = graph
        return reference
