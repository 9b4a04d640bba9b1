"""The WSGI entry point for gunicorn: `gunicorn api.wsgi:app` (settings from the environment)."""

from api.app import create_app
from core.logging_context import configure_process_logging
from core.settings import Settings

_settings = Settings.from_env()
configure_process_logging(_settings.log_level)
app = create_app(_settings)
