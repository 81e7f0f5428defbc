"""The local two-region platform: its components, their processes, and the launcher."""
