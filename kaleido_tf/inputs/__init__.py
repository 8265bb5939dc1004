"""Online input pipeline (tf.data): parsing, negatives, masking, pretext transforms."""
