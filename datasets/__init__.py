"""Subjects and driving audio: the catalog of registered clips and their preparation."""
