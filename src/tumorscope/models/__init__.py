"""Networks: the joint classify+segment UNet (smp or MONAI BasicUNet) and encoder weights.

Which network a task uses is recorded in the task registry (tumorscope.tasks.registry).
"""

from tumorscope.models.joint import build_joint, joint_from_config

__all__ = ["build_joint", "joint_from_config"]
