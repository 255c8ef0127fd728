"""lssat.data.formats."""
