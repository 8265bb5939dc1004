"""Offline data preparation: Fashion-Gen and EasyTransfer inputs to TFRecords."""
