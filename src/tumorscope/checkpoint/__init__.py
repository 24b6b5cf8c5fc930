"""Shareable checkpoints: safetensors weights (``store``) beside a typed JSON card (``card``)."""
