"""Reference methods every benchmark needs as bounds and sanity checks."""
