"""Subcommands of `lssat`: one module each, discovered by `lssat.cli`."""
