# Image for docker-compose.yml (untested on the build machines: no Docker engine there).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY detectors ./detectors
COPY sinks ./sinks
RUN pip install --no-cache-dir .
USER nobody
CMD ["driftline", "worker"]
