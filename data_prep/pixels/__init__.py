"""CommerceMM offline data: pixel records with MIM teacher targets, Omni tuples."""
