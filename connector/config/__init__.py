"""The connection file: its schema, loading with secrets from the environment, hot reload."""
