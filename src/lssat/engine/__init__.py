"""lssat.engine."""
