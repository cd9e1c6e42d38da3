"""Datasets, transforms and palettes."""
