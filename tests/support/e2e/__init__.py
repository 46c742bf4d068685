"""See tests/README.md."""
