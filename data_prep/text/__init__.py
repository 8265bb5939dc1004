"""Text processing of product descriptions."""
