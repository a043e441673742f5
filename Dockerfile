FROM python:3.11-slim
WORKDIR /app
COPY . /app
# Editable install: migrations/ and alembic.ini are read from the source tree.
RUN pip install --no-cache-dir -c requirements.lock -e . \
    && useradd --system --home /app backorder
USER backorder
EXPOSE 8000
CMD ["backorder", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
