"""lssat.texture."""
