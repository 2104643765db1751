"""Deepfake image detection service."""

__version__ = "1.0.0"
