"""The units and error types every bench module shares; a leaf module (imports nothing from bench), so that
``bench.media`` and ``bench.contracts`` need not import each other."""

FPS = 25
AUDIO_RATE = 16_000
SAMPLES_PER_FRAME = AUDIO_RATE // FPS


class BenchError(Exception):
    """A problem the user can fix; the CLI prints its message as one line, with no traceback."""


class Unavailable(BenchError):
    """What was asked for cannot run here (weights, a package or an input are missing); the message says how to get it."""
