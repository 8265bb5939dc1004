"""Detector regions (RoIs) for ImageBERT / InterBERT records."""
