"""Reports built from the results store: tables (and, with later issues, leaderboards and regressions)."""
