"""Kestrel: ISR full-motion-video PED and a TAK-compatible tactical edge server."""

__version__ = "0.1.0"
