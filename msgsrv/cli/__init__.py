"""Thin click commands over the core library (one module per command)."""
