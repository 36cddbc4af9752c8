"""HTTP routes, one ``api_routes`` per module ("router" always means the model router here)."""
