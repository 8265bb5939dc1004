"""Building blocks: embeddings, masks, gathers (layers <- networks <- heads)."""
