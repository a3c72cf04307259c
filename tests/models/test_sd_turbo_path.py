"""The real diffusion path end to end, on CPU, without downloads: a tiny SD-Turbo-layout
pipeline directory (``save_pretrained`` of random weights: unet, vae, text_encoder,
tokenizer, scheduler, model_index.json) is what a lab gets from
``hf download stabilityai/sd-turbo``. A bundle is trained whose semantic head
regresses that directory's CLIP text embeddings and whose refiner references that
directory as an ``sd-turbo`` refiner (``local_files_only``); a simulated session is then
replayed through it live and every trial is reconstructed by diffusers' img2img pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

N_TRIALS = 8


def _bpe_vocab(words: set[str]) -> tuple[dict[str, int], list[str]]:
    """A CLIP BPE vocabulary: every letter (inside and at the end of a word) plus, for each
    word, the left-to-right merges that build it into one token."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    merges: list[str] = []
    for w in sorted(words):
        parts = list(w[:-1]) + [w[-1] + "</w>"]
        left = parts[0]
        for right in parts[1:]:
            merge = f"{left} {right}"
            if merge not in merges:
                merges.append(merge)
            left = left + right
            vocab.setdefault(left, len(vocab))
    return vocab, merges


def write_tiny_sd_turbo(root: Path) -> Path:
    """A StableDiffusionPipeline-layout directory with tiny random components (SD-Turbo's
    layout: UNet with cross-attention, 4-channel AutoencoderKL, CLIP text encoder and
    tokenizer, Euler scheduler with trailing timesteps)."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from bci_app.models.refiners import sd_turbo_scheduler_config
    from bci_app.stimuli import DemoStimulusSet

    words = {w for k in range(DemoStimulusSet.n_classes) for w in DemoStimulusSet.caption(k).split()}
    vocab, merges = _bpe_vocab(words)
    raw = root / "tokenizer-src"
    raw.mkdir(parents=True)
    (raw / "vocab.json").write_text(json.dumps(vocab))
    (raw / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(str(raw / "vocab.json"), str(raw / "merges.txt"), model_max_length=77)

    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
        pad_token_id=1,
    ))
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4, norm_num_groups=32, sample_size=16,
    )
    scheduler = EulerDiscreteScheduler(**sd_turbo_scheduler_config())
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    out = root / "sd-turbo-tiny"
    pipe.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    return write_tiny_sd_turbo(tmp_path_factory.mktemp("sd"))


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # everything below must come from local directories (local_files_only)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_tiny_directory_has_the_sd_turbo_layout(sd_dir):
    from bci_app.models.text import ClipTextEncoder

    index = json.loads((sd_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (sd_dir / sub).is_dir() and sub in index
    te = ClipTextEncoder.from_pretrained(sd_dir)
    assert (te.seq_len, te.dim) == (77, 32)
    # the captions' words are single tokens of the tiny vocabulary
    ids = te.tokenizer("an image of a red star").input_ids
    assert te.tokenizer.convert_ids_to_tokens(ids)[1:-1] == ["an</w>", "image</w>", "of</w>", "a</w>",
                                                              "red</w>", "star</w>"]


def test_train_and_replay_live_through_sd_turbo(sd_dir, tmp_path, monkeypatch):
    from bci_app.cli import main
    from bci_app.models.refiners import DiffusersImg2ImgRefiner
    from bci_app.training.recipe import train_bundle

    cfg = {
        "data": {"val_frac": 0.2, "min_trials_per_class": 0},
        "encoder": {"name": "binned_linear", "n_outputs": 16, "kwargs": {"bin_ms": 40.0},
                    "epochs": 2, "batch_classes": 8, "per_class": 2},
        "gan": {"resolution": 16, "z_dim": 8, "base_channels": 8, "epochs": 1, "batch_size": 16},
        "semantic": {"text_encoder": {"type": "clip", "name": str(sd_dir)}, "hidden": 32,
                     "epochs": 2, "batch_size": 32},
        "refiner": {"type": "sd-turbo", "model": str(sd_dir), "steps": 2, "strength": 0.5},
        "classifier": {"train": False},
    }
    bundle = train_bundle("synthetic:200", tmp_path / "bundle", cfg, device="cpu", seed=0, progress=False)
    conf = json.loads((bundle / "config.json").read_text())
    assert conf["refiner"] == {"type": "sd-turbo", "model": str(sd_dir), "steps": 2, "strength": 0.5}
    assert conf["semantic"]["text_encoder"] == {"type": "clip", "name": str(sd_dir), "seq_len": 77, "dim": 32}
    assert (conf["semantic"]["seq_len"], conf["semantic"]["dim"]) == (77, 32)
    assert conf["training"]["component_images"]["refiner"] == "external"  # referenced, not retrained
    assert not (bundle / "refiner").exists()

    session = tmp_path / "session.fif"
    assert main(["simulate", "--out", str(session), "--trials", str(N_TRIALS), "--seed", "7"]) == 0

    # spy on the refiner the live pipeline loads from the bundle
    seen: list[tuple[DiffusersImg2ImgRefiner, tuple[int, ...], tuple[int, ...]]] = []
    real_refine = DiffusersImg2ImgRefiner.refine

    def refine(self, saliency, prompt_embeds, *a, **kw):
        img = real_refine(self, saliency, prompt_embeds, *a, **kw)
        seen.append((self, tuple(prompt_embeds.shape), tuple(img.shape)))
        return img

    monkeypatch.setattr(DiffusersImg2ImgRefiner, "refine", refine)
    out = tmp_path / "replay"
    rc = main(["replay", str(session), "--bundle", str(bundle), "--headless", "--out", str(out),
               "--speed", "4", "--device", "cpu"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["trials"] == N_TRIALS and report["reconstructed"] == N_TRIALS, report
    assert not report["rejected"] and report["dropped"] == 0, report
    assert (out / "grid.png").is_file()

    assert seen, "the sd-turbo refiner never ran"
    refiners = {id(r) for r, _, _ in seen}
    assert len(refiners) == 1  # one refiner, loaded once from the bundle
    ref = seen[0][0]
    assert isinstance(ref, DiffusersImg2ImgRefiner) and ref.kind == "sd-turbo" and ref.weights == "pretrained"
    assert ref.source == str(sd_dir) and ref.resolution == 16  # unet sample_size 8 x vae factor 2
    assert (ref.seq_len, ref.dim) == (77, 32)
    for _, emb_shape, img_shape in seen:
        assert emb_shape[1:] == (77, 32)  # the CLIP text encoder's [seq_len, hidden]
        assert img_shape[1:] == (3, ref.resolution, ref.resolution)
    lines = [json.loads(x) for x in (out / "trials.jsonl").read_text().splitlines() if x.strip()]
    assert [x["outcome"] for x in lines] == ["reconstructed"] * N_TRIALS
