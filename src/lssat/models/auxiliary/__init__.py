"""lssat.models.auxiliary."""
