"""Kaleido Patch Generator: foreground crop and multi-scale patch geometry."""
