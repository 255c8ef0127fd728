"""lssat.models."""
