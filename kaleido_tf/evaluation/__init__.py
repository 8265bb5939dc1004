"""Evaluation protocols; never trains."""
