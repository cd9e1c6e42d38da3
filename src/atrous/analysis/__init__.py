"""Analyses of both papers: receptive fields, complexity (and, later, the figures)."""
