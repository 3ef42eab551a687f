"""The per-frame feature extractor: torchvision's MobileNetV3-Small trunk, the paper's backbone."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models import mobilenet_v3_small


class FrameEncoder(nn.Module):
    """MobileNetV3-Small without its classifier: ``[N, C, H, W]`` -> ``[N, 576]`` embeddings.

    Built with ``weights=None`` (no download); the first convolution is replaced so the trunk accepts
    ``in_channels`` (1 for CT/ultrasound slices). Runs in ``channels_last`` memory format, which is
    about 4x faster on CPU at 28x28.
    """

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        net = mobilenet_v3_small(weights=None)
        first = net.features[0][0]
        net.features[0][0] = nn.Conv2d(
            in_channels, first.out_channels, first.kernel_size, first.stride, first.padding, bias=False
        )
        self.features = net.features
        self.pool = net.avgpool
        self.out_features: int = net.classifier[0].in_features
        self.to(memory_format=torch.channels_last)

    def forward(self, frames: Tensor) -> Tensor:
        frames = frames.contiguous(memory_format=torch.channels_last)
        return self.pool(self.features(frames)).flatten(1)
