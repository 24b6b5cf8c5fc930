"""Evaluation: the generic ``evaluate`` (fold checks, task dispatch), per-task evaluators, the
typed ``metrics.json`` (result), slice stacks, the HTML report, model-card Markdown, compare."""
