"""Format plugins, one module per format, grouped by domain."""
