"""Models: an encoder network plus a dict of heads."""
