"""BraTS segmenters: three sigmoid outputs (WT, TC, ET). 2D: an smp UNet over the chosen
modalities as channels (any smp/timm encoder, optional pretrained weights); 3D: MONAI
SegResNet or UNet."""

from __future__ import annotations

from typing import Any

from torch import nn

from tumorscope.models.joint import build_smp

REGION_OUTPUTS = 3


def brats_from_config(model_cfg: dict[str, Any], num_classes: int = REGION_OUTPUTS,
                      load_pretrained: bool = True) -> nn.Module:
    """Build from the ``model`` section (as stored in model cards)."""
    channels = len(model_cfg["modalities"])
    if model_cfg["family"] == "2d":
        weights = model_cfg.get("encoder_weights") if load_pretrained else None
        return build_smp("unet", str(model_cfg["encoder"]), channels, REGION_OUTPUTS, None,
                         weights, "none", float(model_cfg.get("dropout", 0.0)))
    filters = int(model_cfg.get("filters", 16))
    dropout = float(model_cfg.get("dropout", 0.0)) or None
    if model_cfg["arch"] == "segresnet":
        from monai.networks.nets import SegResNet

        return SegResNet(spatial_dims=3, in_channels=channels, out_channels=REGION_OUTPUTS,
                         init_filters=filters, blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1),
                         dropout_prob=dropout)
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=channels, out_channels=REGION_OUTPUTS,
                channels=(filters, 2 * filters, 4 * filters, 8 * filters),
                strides=(2, 2, 2), num_res_units=2, dropout=dropout or 0.0)
