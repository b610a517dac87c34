# Image for docker-compose.yml (untested on the build machines: no Docker engine there).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY detectors ./detectors
COPY sinks ./sinks
COPY schemas ./schemas
RUN pip install --no-cache-dir . \
    && useradd --system --create-home --home-dir /home/driftline --uid 10001 driftline \
    && mkdir -p /var/lib/driftline && chown driftline:driftline /var/lib/driftline
# A non-root user with a data folder of its own: the worker never writes its working directory.
USER driftline
ENV DRIFTLINE_DATA_DIR=/var/lib/driftline
WORKDIR /home/driftline
CMD ["driftline", "worker"]
