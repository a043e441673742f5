# The API image. It expects DATABASE_URL (an external PostgreSQL: see docker-compose.yml) and
# BACKORDER_MASTER_KEY; `backorder serve` migrates on start.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BACKORDER_LOG_FORMAT=json

WORKDIR /app

# Dependencies first, pinned by the lock file, so that code changes reuse this layer.
COPY pyproject.toml requirements.lock README.md ./
COPY src/backorder/__init__.py src/backorder/__init__.py
RUN pip install --no-cache-dir -c requirements.lock -e .

# The code. The install is editable on purpose: the service finds migrations/ and alembic.ini
# next to src/ (db/engine.py: PROJECT_ROOT), which a wheel install would leave behind.
COPY . .
RUN useradd --system --no-create-home --home-dir /app backorder \
    && python -c "import backorder.api.app, backorder.cli" \
    && test -f /app/alembic.ini && test -d /app/migrations/versions

USER backorder
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
CMD ["backorder", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
