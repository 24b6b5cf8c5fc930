"""Networks: the joint classify+segment UNet, with a registry for later families."""

from tumorscope.models.joint import build_joint, joint_from_config
from tumorscope.models.registry import available, get_builder

__all__ = ["available", "build_joint", "get_builder", "joint_from_config"]
