# One image for every gradq service of docker-compose.yml: api, worker, reconciler, migrate and
# the MLflow tracking server (gradq installs mlflow already). Classic-builder syntax only
# (no RUN --mount, COPY --chmod or heredocs): Debian's docker.io builds it that way.
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/gradq
# The dependencies first, in a layer of their own: a code change does not reinstall them.
# (Installed from a folder of its own: setuptools would reuse its stale build/ in /src.)
COPY pyproject.toml README.md /deps/
RUN touch /deps/settings.py /deps/logs.py \
    && /opt/gradq/bin/pip install '/deps[service]' \
    && /opt/gradq/bin/pip uninstall -y gradq \
    && rm -rf /deps
COPY pyproject.toml README.md settings.py logs.py /src/
COPY models /src/models
COPY service /src/service
COPY workers /src/workers
COPY store /src/store
COPY contract /src/contract
COPY broker /src/broker
COPY migrations /src/migrations
COPY mlflow_server /src/mlflow_server
RUN /opt/gradq/bin/pip install --no-deps /src \
    && find /opt/gradq -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.11-slim-bookworm

ENV PATH=/opt/gradq/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GRADQ_HOME=/var/lib/gradq \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true
# Named volumes take their mount point's owner from the image: make them, owned by gradq,
# before USER.
RUN groupadd --system --gid 10001 gradq \
    && useradd --system --uid 10001 --gid gradq --home-dir /var/lib/gradq --shell /usr/sbin/nologin gradq \
    && mkdir -p /var/lib/gradq/datasets /var/lib/gradq/checkpoints /var/lib/mlflow \
    && chown -R gradq:gradq /var/lib/gradq /var/lib/mlflow
COPY --from=build /opt/gradq /opt/gradq
USER gradq
WORKDIR /var/lib/gradq
EXPOSE 8000 5000
CMD ["gradq", "--help"]
