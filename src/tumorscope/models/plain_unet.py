"""A plain UNet without a pretrained encoder (MONAI's BasicUNet), with the joint interface:
``forward(x) -> (mask_logits, class_logits)``, the class head pooling the bottleneck."""

from __future__ import annotations

import torch
from monai.networks.nets import BasicUNet
from torch import nn

FEATURES = (32, 32, 64, 128, 256, 32)


class PlainUNet(BasicUNet):
    """BasicUNet (2D) plus a classification head on the deepest features."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.2) -> None:
        super().__init__(spatial_dims=2, in_channels=in_channels, out_channels=1,
                         features=FEATURES)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(FEATURES[4], num_classes))

    @property
    def encoder(self) -> nn.ModuleList:
        """The contracting path (a view, not registered twice), for per-group learning rates."""
        return nn.ModuleList([self.conv_0, self.down_1, self.down_2, self.down_3, self.down_4])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x0 = self.conv_0(x)
        x1 = self.down_1(x0)
        x2 = self.down_2(x1)
        x3 = self.down_3(x2)
        x4 = self.down_4(x3)
        u1 = self.upcat_1(self.upcat_2(self.upcat_3(self.upcat_4(x4, x3), x2), x1), x0)
        return self.final_conv(u1), self.head(x4)
