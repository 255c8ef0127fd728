"""lssat.metrics."""
