"""The WSGI entry point for gunicorn: `gunicorn api.wsgi:app` (settings from the environment)."""

from api.app import create_app
from predictq.logging_context import configure_process_logging
from predictq.settings import Settings

_settings = Settings.from_env()
configure_process_logging(_settings.log_level)
app = create_app(_settings)
