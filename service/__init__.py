"""flowfront service."""
