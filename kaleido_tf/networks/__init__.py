"""Networks: encoders that are not trained alone."""
