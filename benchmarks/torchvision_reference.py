"""Record torchvision's AlexNet / Inception-v3 state-dict layout and reference outputs
for tests/evaluation/data/imagenet_networks_keys.json.

Run once in a separate environment that has a working torchvision (not bci-app's: PyPI's
torchvision does not import beside the CPU torch this project pins), e.g.::

    python -m venv /tmp/tvenv && /tmp/tvenv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/tvenv/bin/python benchmarks/torchvision_reference.py tests/evaluation/data/imagenet_networks_keys.json

The test ``test_imagenet_networks_give_torchvisions_outputs`` repeats the same seeded
initialisation on bci_app.evaluation.networks and compares.
"""

import json
import sys

import torch
import torchvision

out = {"torchvision": torchvision.__version__, "torch": torch.__version__}
for name, ctor, size in (
    ("alexnet", lambda: torchvision.models.alexnet(weights=None), 224),
    ("inception_v3", lambda: torchvision.models.inception_v3(
        weights=None, aux_logits=True, init_weights=False, transform_input=True), 299),
):
    net = ctor().eval()
    torch.manual_seed(0)
    for _, p in sorted(net.named_parameters()):
        torch.nn.init.normal_(p, std=0.05)
    torch.manual_seed(1)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        logits = net(x)
    out[name] = {
        "state_dict": {k: list(v.shape) for k, v in net.state_dict().items()},
        "reference_output": {
            "logits_first8": logits[:, :8].tolist(),
            "logits_sum": float(logits.sum()),
        },
    }
with open(sys.argv[1], "w") as f:
    json.dump(out, f, indent=1)
print("wrote", sys.argv[1])
