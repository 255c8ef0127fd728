"""lssat.bench."""
