"""Readers of the source datasets."""
