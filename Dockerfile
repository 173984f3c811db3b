# streambot on Debian with the CPU build of PyTorch: the sketch world, the
# encoder and the local RTMP server. For the GPU worlds, start from a CUDA base.
FROM python:3.11-slim-bookworm
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        nginx libnginx-mod-rtmp ffmpeg fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streambot ./streambot
COPY config ./config
# Pass --build-arg PIP_INDEX_URL=... to take torch from a CPU-only wheel index.
ARG PIP_INDEX_URL
RUN pip install --no-cache-dir "torch==2.13.0" && pip install --no-cache-dir .
ENV STREAMBOT_CONFIG_DIR=/app/config
EXPOSE 1935 8080
ENTRYPOINT ["streambot"]
CMD ["run", "--output", "twitch", "--chat", "none"]
