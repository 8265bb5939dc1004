"""TFRecord encoding and atomic shard writing."""
