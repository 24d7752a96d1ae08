# syntax=docker/dockerfile:1
#
# One image for every process: `salescycle api` (the default command), `salescycle worker`
# and `salescycle migrate`. The build stage installs the runtime dependencies at the
# versions pinned in requirements.lock into /opt/venv; the runtime stage copies that
# virtualenv and the source, and runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1

RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --quiet "uv==0.13.9"

WORKDIR /app

# Dependencies first, so a source change does not reinstall them. `-r pyproject.toml`
# takes the runtime dependencies only (no dev extra); `-c requirements.lock` pins each
# one to the version the tests ran with.
COPY pyproject.toml requirements.lock README.md ./
RUN /opt/venv/bin/uv pip install --python /opt/venv/bin/python \
        -r pyproject.toml -c requirements.lock

COPY alembic.ini ./
COPY migrations ./migrations
COPY workers ./workers
COPY app ./app
# Editable, because app.core.migrate finds alembic.ini and migrations/ beside the
# source tree in /app.
RUN /opt/venv/bin/uv pip install --python /opt/venv/bin/python --no-deps -e . \
    && /opt/venv/bin/pip uninstall --quiet --yes uv


FROM ${PYTHON_IMAGE} AS runtime

RUN groupadd --system --gid 10001 salescycle \
    && useradd --system --uid 10001 --gid salescycle --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin salescycle \
    && install -d -o salescycle -g salescycle -m 0750 /var/lib/salescycle

COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SALESCYCLE_DATA_DIR=/var/lib/salescycle

WORKDIR /app
USER salescycle:salescycle
EXPOSE 8000

# Healthchecks differ per process (HTTP for the api, Redis for the worker), so they
# are set where the process is chosen: see docker-compose.yml.
ENTRYPOINT ["salescycle"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
