"""Ridgeline: a model-training service whose heart is the regularization spec."""

__version__ = "0.1.0"
