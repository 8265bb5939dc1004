"""Training: optimizer, distribution, the shared training loop."""
