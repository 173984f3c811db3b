# streambot in one container.
#
#   docker build -t streambot .                          # GPU worlds (CUDA runtime base)
#   docker build -t streambot:cpu --build-arg VARIANT=cpu .   # sketch world only, no CUDA
#
# The program runs as an unprivileged user. Model weights and the show's state
# (timeline, console token and sessions, logs) live on volumes, so an update
# is a new image with the same volumes. Secrets come only from the environment
# (STREAMBOT_STREAM_KEY, ...) or a mounted secrets file (STREAMBOT_SECRETS).
# compose.yaml starts it beside an nginx RTMP server for a local preview.
ARG VARIANT=gpu

FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS base-gpu
ENV TORCH_INDEX=https://download.pytorch.org/whl/cu128 \
    EXTRAS="[gpu]"

FROM python:3.11-slim-bookworm AS base-cpu
ENV TORCH_INDEX=https://download.pytorch.org/whl/cpu \
    EXTRAS=""

# hadolint ignore=DL3006
FROM base-${VARIANT}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Distribution packages follow the base image's release; their versions are
# the release's own, so they are not pinned one by one.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ffmpeg fonts-dejavu-core libfribidi0 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/streambot
ENV PATH=/opt/streambot/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --index-url "$TORCH_INDEX" "torch==2.13.0"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY streambot ./streambot
COPY config ./config
COPY overlays ./overlays
# Editable: the program finds config/ and overlays/ beside its package. Its bytecode is
# compiled here: the user below cannot write /app, and would compile every module at each start.
RUN pip install -e ".${EXTRAS}" && python -m compileall -q /app/streambot

RUN useradd --create-home --uid 10001 --user-group streambot \
    && mkdir -p /var/lib/streambot/models /var/lib/streambot/state \
    && chown -R streambot:streambot /var/lib/streambot
ENV HF_HOME=/var/lib/streambot/models \
    XDG_DATA_HOME=/var/lib/streambot/state/data \
    XDG_STATE_HOME=/var/lib/streambot/state/logs \
    XDG_CONFIG_HOME=/var/lib/streambot/state/config \
    XDG_CACHE_HOME=/var/lib/streambot/state/cache \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/streambot/models", "/var/lib/streambot/state"]
USER 10001:10001

EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["streambot"]
CMD ["run", "--output", "twitch", "--chat", "none", "--console", "0.0.0.0:8080", "--log-format", "json"]
