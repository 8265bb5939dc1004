"""Losses: per-example values and weights; only reduction.py reduces."""
