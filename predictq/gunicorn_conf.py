"""Gunicorn settings for the API (`gunicorn -c python:predictq.gunicorn_conf api.wsgi:app`), from the environment.

Gunicorn reads this module's globals when it starts; `predictq serve` and the container both point at it.
"""

from __future__ import annotations

import os

from predictq.settings import Settings

_settings = Settings.from_env()

bind = f"0.0.0.0:{_settings.api_port}"  # `predictq serve --bind` overrides this
workers = _settings.api_workers
# Threads let one worker keep answering polls while another request streams a large upload.
worker_class = "gthread"
threads = _settings.api_threads
# gthread workers heartbeat from their main thread, so long uploads are not killed by this timeout.
timeout = 60
graceful_timeout = 30
keepalive = 5
# The model is loaded lazily per worker process; preloading would share nothing useful across forks.
preload_app = False
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level
# Containers often mount /tmp on overlayfs; heartbeat files on tmpfs avoid stalls there.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Header limits bound what one request can make the server parse before the app sees it.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
# Gunicorn's runtime control socket lives at one path per user: several servers on one host (tests, `predictq up`
# beside a container) would fight over it, and nothing here uses it.
control_socket_disable = True
