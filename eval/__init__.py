"""flowfront eval."""
