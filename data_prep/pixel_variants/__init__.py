"""Pretext variants that need pixels, precomputed offline (DESIGN.md §2)."""
