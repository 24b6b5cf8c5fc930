"""Drawing: overlays, matplotlib plots, GIFs and HTML building blocks (no knowledge of models
or results; evaluation/ composes them into reports)."""
