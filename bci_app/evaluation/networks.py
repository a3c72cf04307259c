"""The two ImageNet networks of the paper's metrics, written in plain torch.

Inception-v3 (Inception Score) and AlexNet (AlexNet(2)/(5) two-way identification) are
built here with the module names and shapes of torchvision's checkpoints, so
``inception_v3_google-*.pth`` and ``alexnet-owt-*.pth`` load into them with
``strict=True``. Nothing here needs torchvision: PyPI's torchvision is a CUDA build that
does not import beside a CPU-only torch ("operator torchvision::nms does not exist"), and
a broken torchvision on the path also breaks transformers' image imports. With these
modules "unavailable" only ever means the weight files are absent.

``tests/evaluation/data/imagenet_networks_keys.json`` holds every parameter and buffer name
and shape that torchvision 0.29.1 gives these two networks (read once from torchvision;
data, not code); a test checks that these modules have exactly that state-dict layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AlexNet", "InceptionV3", "ALEXNET_TAPS"]

# indices in AlexNet.features of the ReLU after conv 2 and after conv 5 (AlexNet(2), (5))
ALEXNET_TAPS = {"alexnet2": 4, "alexnet5": 11}


class AlexNet(nn.Module):
    """AlexNet, "one weird trick" variant (64-192-384-256-256 channels), as torchvision lays
    it out: ``features`` (conv/ReLU/max-pool sequence), 6x6 adaptive pool, ``classifier``."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        convs = [(3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1), (384, 256, 3, 1, 1),
                 (256, 256, 3, 1, 1)]
        layers: list[nn.Module] = []
        for i, (cin, cout, k, s, p) in enumerate(convs):
            layers += [nn.Conv2d(cin, cout, k, stride=s, padding=p), nn.ReLU(inplace=True)]
            if i in (0, 1, 4):
                layers.append(nn.MaxPool2d(3, 2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 36, 4096), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))

    def taps(self, x: torch.Tensor, taps: dict[str, int] = ALEXNET_TAPS) -> dict[str, torch.Tensor]:
        """Flattened activations after the ``features`` layers named in ``taps``."""
        out: dict[str, torch.Tensor] = {}
        last = max(taps.values())
        for idx, layer in enumerate(self.features):
            # the in-place ReLU would overwrite a tapped conv output: taps are after ReLUs
            x = layer(x)
            for key, tap in taps.items():
                if idx == tap:
                    out[key] = x.flatten(1).clone()
            if idx >= last:
                break
        return out


class _Conv(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3), ReLU: torchvision's BasicConv2d."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _row(cin: int, cout: int) -> _Conv:      # 1x7
    return _Conv(cin, cout, (1, 7), padding=(0, 3))


def _col(cin: int, cout: int) -> _Conv:      # 7x1
    return _Conv(cin, cout, (7, 1), padding=(3, 0))


def _pool_branch(x: torch.Tensor, conv: _Conv) -> torch.Tensor:
    return conv(F.avg_pool2d(x, 3, stride=1, padding=1))


class _BlockA(nn.Module):        # 35x35: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | pool-1x1
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1 = _Conv(cin, 48, 1)
        self.branch5x5_2 = _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            _pool_branch(x, self.branch_pool),
        ], 1)


class _BlockB(nn.Module):        # 35 -> 17: 3x3/2 | 1x1-3x3-3x3/2 | max-pool/2
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class _BlockC(nn.Module):        # 17x17, factorised 7x7 convolutions
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1 = _Conv(cin, c7, 1)
        self.branch7x7_2 = _row(c7, c7)
        self.branch7x7_3 = _col(c7, 192)
        self.branch7x7dbl_1 = _Conv(cin, c7, 1)
        self.branch7x7dbl_2 = _col(c7, c7)
        self.branch7x7dbl_3 = _row(c7, c7)
        self.branch7x7dbl_4 = _col(c7, c7)
        self.branch7x7dbl_5 = _row(c7, 192)
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, _pool_branch(x, self.branch_pool)], 1)


class _BlockD(nn.Module):        # 17 -> 8
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(cin, 192, 1)
        self.branch3x3_2 = _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, 192, 1)
        self.branch7x7x3_2 = _row(192, 192)
        self.branch7x7x3_3 = _col(192, 192)
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class _BlockE(nn.Module):        # 8x8, expanded filter bank (1x3 and 3x1 side by side)
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(cin, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([
            self.branch1x1(x),
            torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1),
            torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1),
            _pool_branch(x, self.branch_pool),
        ], 1)


class _AuxHead(nn.Module):
    """The auxiliary classifier: only there so the checkpoint loads strictly; unused in eval."""

    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = _Conv(cin, 128, 1)
        self.conv1 = _Conv(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.conv0(F.avg_pool2d(x, 5, stride=3)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InceptionV3(nn.Module):
    """Inception-v3 for 299x299 inputs, laid out like torchvision's ``inception_v3``.

    ``transform_input=True`` (what torchvision sets for the Google weights) takes
    ImageNet-normalised input and maps it to the ``[-1, 1]`` scaling those weights expect.
    ``forward`` returns the 1000 ImageNet logits (eval mode; the auxiliary head is kept
    for loading only).
    """

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = True) -> None:
        super().__init__()
        self.transform_input = transform_input
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b = _BlockA(192, 32)
        self.Mixed_5c = _BlockA(256, 64)
        self.Mixed_5d = _BlockA(288, 64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, 128)
        self.Mixed_6c = _BlockC(768, 160)
        self.Mixed_6d = _BlockC(768, 160)
        self.Mixed_6e = _BlockC(768, 192)
        self.AuxLogits = _AuxHead(768, num_classes) if aux_logits else None
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280)
        self.Mixed_7c = _BlockE(2048)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(2048, num_classes)

    _MEAN = (0.485, 0.456, 0.406)
    _STD = (0.229, 0.224, 0.225)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transform_input:   # undo the ImageNet normalisation, then scale to [-1, 1]
            mean = x.new_tensor(self._MEAN).view(1, 3, 1, 1)
            std = x.new_tensor(self._STD).view(1, 3, 1, 1)
            x = (x * std + mean - 0.5) / 0.5
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        x = self.dropout(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return self.fc(x)
