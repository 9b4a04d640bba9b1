"""Celery app, chunk tasks and the Redis job store. Never imports Flask."""
