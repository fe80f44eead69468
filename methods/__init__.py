"""Talking-head methods: one folder each, with a ``spec.py`` (plain data, ``SPECS``) and its adapter."""
