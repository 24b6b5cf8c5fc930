"""Experiments behind docs/results.md: the plain-loop baseline and the ablation suite."""
