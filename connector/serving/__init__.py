"""Serving the app: gunicorn with its asyncio front, body limits, child processes for tests."""
