"""metrics["stages"]: decoder -> caption -> drawing, on hand-made scores."""

from __future__ import annotations

import numpy as np
import pytest

from bci_app.evaluation.stages import stage_diagnostics


def _onehot(pred, n=4):
    return np.eye(n)[np.asarray(pred)]


def test_chain_names_the_step_that_loses_most():
    truth = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    decoder = _onehot([0, 1, 2, 3, 0, 1, 2, 0])   # 7 of 8 right
    caption = _onehot([0, 1, 2, 3, 0, 1, 3, 0])   # 6 of 8: loses trial 6
    drawing = _onehot([0, 1, 0, 0, 0, 2, 3, 1])   # 3 of 8: loses trials 2, 3, 5
    st = stage_diagnostics({"decoder": decoder, "caption": caption, "drawing": drawing}, truth,
                           ways=4, topk=1, draws=50, seed=0)
    rows = st["rows"]
    assert [rows[k]["top1_all_classes"] for k in ("decoder", "caption", "drawing")] == [7 / 8, 6 / 8, 3 / 8]
    # one-hot scores: N-way success exactly when the argmax is right, whatever the draw
    assert rows["decoder"]["acc"] == pytest.approx(7 / 8) and rows["drawing"]["acc"] == pytest.approx(3 / 8)
    ch = st["chain"]
    assert ch["caption_right_given_decoder_right"] == {"rate": 6 / 7, "n": 7}
    assert ch["caption_right_given_decoder_wrong"] == {"rate": 0.0, "n": 1}
    assert ch["drawing_right_given_caption_right"] == {"rate": 3 / 6, "n": 6}
    assert ch["drawing_right_given_caption_wrong"] == {"rate": 0.0, "n": 2}
    assert st["top1_lost"] == pytest.approx({"decoder->caption": 1 / 8, "caption->drawing": 3 / 8})
    assert st["lost_most_at"] == "caption->drawing"


def test_missing_read_out_is_said_not_guessed():
    truth = np.array([0, 1, 2])
    st = stage_diagnostics({"decoder": None, "caption": _onehot([0, 1, 1]), "drawing": _onehot([0, 0, 0])},
                           truth, ways=3, topk=1, draws=10, seed=0)
    assert st["rows"]["decoder"]["acc"] is None and "no such read-out" in st["rows"]["decoder"]["unavailable"]
    assert "caption_right_given_decoder_right" not in st["chain"]
    assert st["top1_lost"] == pytest.approx({"caption->drawing": 1 / 3})
    # scores for fewer classes than the labels use: refused with what was expected
    st = stage_diagnostics({"decoder": np.ones((3, 2)), "caption": None, "drawing": None}, truth,
                           ways=2, topk=1, draws=5, seed=0)
    assert "2 scores per trial" in st["rows"]["decoder"]["unavailable"] and st["lost_most_at"] is None


def test_evaluate_leads_with_the_model_against_its_linear_readout():
    """The summary line and report.html open with the paired model-minus-baseline figure and
    the stage where the most is lost; a model below its baseline is said so."""
    from bci_app.evaluation.command import lead_line
    from bci_app.evaluation.report_html import render_report

    m = {"acc": 0.30, "n": 400, "baseline": {"acc": 0.35, "model_minus_baseline":
                                             {"diff": -0.05, "ci": [-0.09, -0.01], "p": 0.99}},
         "stages": {"lost_most_at": "drawing", "top1_lost": {"caption": 0.01, "drawing": 0.14}}}
    line = lead_line(m)
    assert line.startswith("model vs its own linear readout: 0.300 vs 0.350, paired difference -0.050")
    assert "BELOW the baseline" in line and "most lost at drawing (+0.140)" in line
    up = {**m, "acc": 0.40, "baseline": {"acc": 0.35, "model_minus_baseline": {"diff": 0.05, "ci": [0.01, 0.09],
                                                                                 "p": 0.01}}}
    assert "ABOVE the baseline" in lead_line(up)
    page = render_report(m)
    lead = page.index('id="lead"')
    assert lead < page.index("<h2>Overall")
    assert 'class="leak" id="lead"' in page and "loses the most at the drawing step" in page
    assert 'class="ok" id="lead"' in render_report(up)
