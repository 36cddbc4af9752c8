"""flowfront flowfront."""
