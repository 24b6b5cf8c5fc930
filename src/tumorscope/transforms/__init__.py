"""Preprocessing and augmentation for 2D slices."""
