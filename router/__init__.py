"""flowfront router."""
