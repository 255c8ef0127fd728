"""lssat.preprocess."""
