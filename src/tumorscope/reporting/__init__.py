"""Overlays, plots and reports."""
