"""bench: one pinned, calibrated benchmark for speech-driven talking-head synthesis."""

__version__ = "0.1.0"
