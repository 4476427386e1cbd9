# One image for every role: `foresight worker`, `foresight scaler`, `foresight produce`, ...
# Runtime dependencies only, pinned by requirements.lock (used as constraints, so the
# lock's dev extras are not installed); runs as an unprivileged user.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY requirements.lock pyproject.toml README.md ./
COPY detectors ./detectors
COPY scaler ./scaler
COPY streams ./streams
RUN /opt/venv/bin/pip install --constraint requirements.lock . \
    && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

FROM python:3.11-slim
RUN groupadd --system --gid 10001 foresight \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin foresight \
    && install -d -o 10001 -g 10001 /var/lib/foresight
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FORESIGHT_DATA_DIR=/var/lib/foresight
WORKDIR /var/lib/foresight
USER 10001:10001
EXPOSE 6066 8000
ENTRYPOINT ["foresight"]
CMD ["--help"]
