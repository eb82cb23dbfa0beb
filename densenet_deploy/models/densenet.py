"""DenseNet as in Huang et al. (CVPR 2017), with torchvision-compatible state-dict keys.

Three small modules (layer, block, transition) build every variant: the ImageNet DenseNet-BC models of
Table 1 and the CIFAR/SVHN DenseNet and DenseNet-BC models of Table 2.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp


class DenseLayer(nn.Module):
    """H_l: BN-ReLU-Conv(3x3), or with a bottleneck BN-ReLU-Conv(1x1, bn_size*k)-BN-ReLU-Conv(3x3, k)."""

    def __init__(
        self, in_channels: int, growth_rate: int, bn_size: int | None, drop_rate: float, memory_efficient: bool = False
    ):
        super().__init__()
        self.bottleneck = bn_size is not None
        self.memory_efficient = memory_efficient
        if self.bottleneck:
            inner = bn_size * growth_rate
            self.norm1 = nn.BatchNorm2d(in_channels)
            self.relu1 = nn.ReLU(inplace=True)
            self.conv1 = nn.Conv2d(in_channels, inner, kernel_size=1, stride=1, bias=False)
            self.drop1 = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
            self.norm2 = nn.BatchNorm2d(inner)
            self.relu2 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(inner, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.norm1 = nn.BatchNorm2d(in_channels)
            self.relu1 = nn.ReLU(inplace=True)
            self.conv1 = nn.Conv2d(in_channels, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()

    def _first(self, *inputs: torch.Tensor, update_stats: bool = True) -> torch.Tensor:
        x = torch.cat(inputs, 1)
        if update_stats:
            x = self.norm1(x)
        else:  # the same batch-statistics normalisation; copies of the running stats take the update
            norm = self.norm1
            x = F.batch_norm(
                x,
                norm.running_mean.clone(),
                norm.running_var.clone(),
                norm.weight,
                norm.bias,
                True,
                norm.momentum or 0.0,
                norm.eps,
            )
        out = self.conv1(self.relu1(x))
        return self.drop1(out) if self.bottleneck else out

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        # Checkpointing recomputes the concatenation + first conv in backward (Pleiss et al.,
        # arXiv:1707.06990); it only pays off, and only runs, when gradients are being computed.
        if self.memory_efficient and self.training and any(t.requires_grad for t in inputs):
            calls = []

            def first(*tensors):
                # The backward recompute normalises with the same batch statistics but must not update
                # norm1's running stats (or num_batches_tracked) a second time.
                calls.append(None)
                return self._first(*tensors, update_stats=len(calls) == 1)

            out = cp.checkpoint(first, *inputs, use_reentrant=False)
        else:
            out = self._first(*inputs)
        if self.bottleneck:
            out = self.conv2(self.relu2(self.norm2(out)))
        return self.drop(out)


class DenseBlock(nn.ModuleDict):
    """Each layer sees the concatenation of the block input and every earlier layer's output."""

    def __init__(
        self,
        num_layers: int,
        in_channels: int,
        growth_rate: int,
        bn_size: int | None,
        drop_rate: float,
        memory_efficient: bool = False,
    ):
        super().__init__()
        for i in range(num_layers):
            self[f"denselayer{i + 1}"] = DenseLayer(
                in_channels + i * growth_rate, growth_rate, bn_size, drop_rate, memory_efficient
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN-ReLU-Conv(1x1)-AvgPool(2x2, stride 2) between dense blocks; compression lives in out_channels."""

    def __init__(self, in_channels: int, out_channels: int, drop_rate: float = 0.0):
        layers = [
            ("norm", nn.BatchNorm2d(in_channels)),
            ("relu", nn.ReLU(inplace=True)),
            ("conv", nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, bias=False)),
        ]
        if drop_rate > 0:
            layers.append(("drop", nn.Dropout(drop_rate)))
        layers.append(("pool", nn.AvgPool2d(kernel_size=2, stride=2)))
        super().__init__(OrderedDict(layers))


class DenseNet(nn.Module):
    """A DenseNet; `stem` is "imagenet" (7x7/2 conv + BN-ReLU + 3x3/2 max-pool) or "cifar" (3x3 conv)."""

    def __init__(
        self,
        growth_rate: int,
        block_config: tuple[int, ...],
        num_init_features: int,
        bn_size: int | None = 4,
        compression: float = 0.5,
        stem: str = "imagenet",
        num_classes: int = 1000,
        in_channels: int = 3,
        drop_rate: float = 0.0,
        memory_efficient: bool = False,
    ):
        super().__init__()
        if stem == "imagenet":
            layers = [
                ("conv0", nn.Conv2d(in_channels, num_init_features, 7, stride=2, padding=3, bias=False)),
                ("norm0", nn.BatchNorm2d(num_init_features)),
                ("relu0", nn.ReLU(inplace=True)),
                ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            ]
        elif stem == "cifar":
            layers = [("conv0", nn.Conv2d(in_channels, num_init_features, 3, stride=1, padding=1, bias=False))]
        else:
            raise ValueError(f"unknown stem {stem!r}")
        self.features = nn.Sequential(OrderedDict(layers))

        channels = num_init_features
        for b, num_layers in enumerate(block_config, start=1):
            self.features.add_module(
                f"denseblock{b}", DenseBlock(num_layers, channels, growth_rate, bn_size, drop_rate, memory_efficient)
            )
            channels += num_layers * growth_rate
            if b != len(block_config):
                out = int(channels * compression)  # floor(theta * m), as the paper defines compression
                self.features.add_module(f"transition{b}", Transition(channels, out, drop_rate))
                channels = out
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        # Head as modules, not functional calls, so hooks and quantizers see them.
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(channels, num_classes)
        self.num_features = channels
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.forward_features(x)))
