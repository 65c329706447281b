"""Quantized training: layers with forward and backward datapaths, training recipes, and the training demo."""
