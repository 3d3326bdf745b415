"""Vitrina: multimodal recommendation and search for e-commerce."""

__version__ = "0.1.0"
