"""A third-party bench plug-in, registered only through entry points (tests put this folder on sys.path)."""
