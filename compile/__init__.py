"""flowfront compile."""
