# intake-bfa's read-only query server: `bfa serve` in a slim, non-root image.
#
#   docker build -t intake-bfa .
#   docker run -d -p 8000:8000 -v bfa-data:/data intake-bfa                 # latest, pinned at start
#   docker run -d -p 8000:8000 -v bfa-data:/data intake-bfa --data-version 2026-11-20
#
# At start the server resolves the version(s) and fetches them, verified, into the /data
# volume (BFA_CACHE_DIR); it then serves from there without network access. A restart
# with the volume reuses the data (and works offline). See docs/serving.md.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md catalog.yaml ./
COPY intake_bfa ./intake_bfa
RUN python -m venv /opt/bfa \
    && /opt/bfa/bin/pip install --no-cache-dir ".[serve]"

FROM python:3.11-slim-bookworm
# A system user without a shell or home: the server needs to write only to /data.
RUN groupadd --system --gid 10001 bfa \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin bfa \
    && mkdir /data \
    && chown 10001:10001 /data
COPY --from=build /opt/bfa /opt/bfa
ENV PATH=/opt/bfa/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BFA_CACHE_DIR=/data \
    BFA_SERVE_HOST=0.0.0.0 \
    BFA_SERVE_PORT=8000
VOLUME ["/data"]
# Numeric, so orchestrators can verify it is not root (runAsNonRoot).
USER 10001:10001
EXPOSE 8000
# The first start downloads the data: give it time before failures count.
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('BFA_SERVE_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["bfa", "serve"]
CMD ["--data-version", "latest"]
