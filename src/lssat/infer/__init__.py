"""lssat.infer."""
