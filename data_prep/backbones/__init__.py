"""Frozen CNN backbones that embed patches offline."""
