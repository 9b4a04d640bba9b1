# syntax=docker/dockerfile:1
# One image, two roles: `serve` (the API under gunicorn, the default) and `worker` (Celery).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: a virtual environment with the dependencies, then the project, then a model check ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# The project is installed apart from the dependencies, in /opt/app (on the venv's path through a .pth file),
# so the runtime image keeps the dependencies in one layer that code edits leave unchanged.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/python -c "import site; open(site.getsitepackages()[0] + '/predictq-app.pth', 'w').write('/opt/app\n')"
ENV PATH=/opt/app/bin:/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first, from pyproject.toml and constraints.txt only, so code edits reuse this layer.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && python -m pip install --constraint constraints.txt --requirement /tmp/requirements.txt

COPY README.md ./
COPY predictq ./predictq
COPY api ./api
COPY worker ./worker
COPY jobs ./jobs
COPY model ./model
COPY core ./core
RUN python -m pip install --no-deps --constraint constraints.txt --target /opt/app . \
    && rm -rf /src/build

# Fail the build if the installed model artifact does not load and match its recorded checksum (run outside
# /src, so the installed package is checked rather than the source tree).
WORKDIR /tmp
RUN python -m predictq.healthcheck model

# ---- runtime: the virtual environment, then the project, run as an unprivileged user ----
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/app/bin:/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PREDICTQ_ROLE=api \
    PREDICTQ_PORT=1313
RUN groupadd --system --gid 10001 predictq \
    && useradd --system --uid 10001 --gid predictq --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin predictq
# /var/lib/predictq holds the development API key, /var/lib/predictq-store the blob store shared by the API and
# the workers (named volumes copy this ownership).
RUN install -d -o 10001 -g 10001 -m 700 /var/lib/predictq /var/lib/predictq-store
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/app /opt/app
WORKDIR /tmp
USER 10001:10001
EXPOSE 1313
# The probe follows PREDICTQ_ROLE: /healthz for the api, a Celery ping for the worker.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-m", "predictq.healthcheck"]
ENTRYPOINT ["predictq"]
CMD ["serve"]
