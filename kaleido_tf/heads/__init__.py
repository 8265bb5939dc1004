"""Heads: map encoder outputs to logits (never losses)."""
