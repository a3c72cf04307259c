"""``bci-app evaluate``: the paper's metrics, computed so that a reviewer can trust them.

==================  ============================================================
module              concept
==================  ============================================================
``command``         the CLI entry (load bundle and data, run, print a summary)
``evaluate``        the evaluation run: metrics.json, report.html, saved images
``split``           the test trials, and which bundle components saw their images
``runner``          the Reconstructor over test trials, seeded per trial like live
``scoring``         one configuration's N-way top-k and SSIM row
``baseline_score``  the bundle's own linear baseline, scored like the model
``ablation``        Table 3: rows as Reconstructor switches
``metrics``         N-way top-k, pixel correlation, two-way identification, IS
``pretrained``      Inception-v3 / AlexNet / CLIP metrics from local weights
``stats``           intervals, permutation and sign-flip p, paired differences
``leakage``         the block-design probe
``report_html``     the self-contained HTML report
``calibration``     the virtual subject's linear-decoder calibration check
==================  ============================================================

SSIM is :mod:`bci_app.models.ssim` (shared with the live report).
"""
