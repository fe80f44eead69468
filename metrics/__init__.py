"""Metrics: one file per metric or family, each declaring ``SPECS`` (plain data) and its implementation.

Metric files import heavy packages (torch, piq, ...) only inside their classes, so listing metrics stays fast.
"""
