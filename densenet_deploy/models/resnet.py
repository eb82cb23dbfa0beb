"""ResNet baselines for the paper's comparisons, with torchvision-compatible state-dict keys.

- ImageNet ResNet-18/34/50/101/152 (He et al., CVPR 2016) laid out exactly as torchvision's
  `resnet.py` (V1.5: the stride of a bottleneck sits on its 3x3 conv), so torchvision checkpoints load
  unchanged and parameter counts match torchvision's to the last parameter.
- CIFAR pre-activation bottleneck ResNets (He et al., ECCV 2016, "Identity Mappings in Deep Residual
  Networks"): three stages of (L-2)/9 bottleneck units, widths 16/32/64 (x4 out), as in Table 2's
  ResNet-164 (1.7M) and ResNet-1001 (10.2M). Key names follow the torchvision layout (conv1, layer{i},
  fc) with a final `bn`, the convention of the common PyTorch ports.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


def _init_weights(model: nn.Module) -> None:
    """He (Kaiming) init for convolutions, unit-scale BN: the init of both ResNet papers and torchvision."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride, torchvision V1.5), 1x1 expand x4 (ResNet-50/101/152)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """torchvision's ImageNet ResNet: 7x7/2 stem, 3x3/2 max-pool, four stages, global pool, fc."""

    def __init__(
        self, block: str, layers: tuple[int, ...], num_classes: int = 1000, in_channels: int = 3, drop_rate: float = 0.0
    ):
        super().__init__()
        block_cls = _BLOCKS[block]
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            self.add_module(f"layer{i}", self._make_layer(block_cls, planes, n, stride=1 if i == 1 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        # Dropout has no parameters, so torchvision checkpoints still load; off (Identity) by default.
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(512 * block_cls.expansion, num_classes)
        self.num_features = 512 * block_cls.expansion
        _init_weights(self)

    def _make_layer(self, block_cls, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block_cls.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block_cls.expansion, stride),
                nn.BatchNorm2d(planes * block_cls.expansion),
            )
        layers = [block_cls(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block_cls.expansion
        layers += [block_cls(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.flatten(self.forward_features(x))))


class PreActBottleneck(nn.Module):
    """BN-ReLU-1x1, BN-ReLU-3x3 (stride), BN-ReLU-1x1 x4; identity added without a final activation."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv1x1(cin, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, out)
        self.relu = nn.ReLU(inplace=False)  # the pre-activated input also feeds the projection shortcut
        # Projection shortcut (1x1 conv) only where the shape changes, applied to the pre-activated input
        # as in the paper's code; elsewhere the shortcut is the identity.
        self.downsample = _conv1x1(cin, out, stride) if stride != 1 or cin != out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """CIFAR pre-activation ResNet: 3x3 conv (16), three stages of bottleneck units, BN-ReLU, pool, fc."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, drop_rate: float = 0.0):
        super().__init__()
        if depth < 11 or (depth - 2) % 9:
            raise ValueError(f"pre-activation bottleneck ResNet depth must be 9n+2, got {depth}")
        n = (depth - 2) // 9
        self.conv1 = _conv3x3(in_channels, 16)
        cin = 16
        for i, (planes, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            units = []
            for j in range(n):
                units.append(PreActBottleneck(cin, planes, stride if j == 0 else 1))
                cin = planes * PreActBottleneck.expansion
            self.add_module(f"layer{i}", nn.Sequential(*units))
        self.bn = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(cin, num_classes)
        self.num_features = cin
        _init_weights(self)
        # Each residual branch starts at zero (its last conv zero-initialised, as Goyal et al. 2017 and
        # Fixup do): with Kaiming init alone, 333 identity-added branches double the activation variance
        # unit after unit and an untrained ResNet-1001 overflows fp32 to NaN in eval mode, which made it
        # impossible to export, verify or time. Training is unaffected in practice: the zero conv gets
        # gradients at the first step.
        for m in self.modules():
            if isinstance(m, PreActBottleneck):
                nn.init.zeros_(m.conv3.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return self.avgpool(self.relu(self.bn(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.flatten(self.forward_features(x))))
