"""Inference without Lightning: back ends with named outputs (runtime), task inferers (joint),
MONAI slice/window inferers, the Predictor facade, prediction outputs and ONNX export."""
