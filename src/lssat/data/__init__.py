"""lssat.data."""
