# The API image: stateless, configured by CARD_* environment variables.
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends libpcsclite1 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY card_backend card_backend
COPY quota quota
COPY reader_agent reader_agent
COPY migrations migrations
RUN pip install --no-cache-dir .
ENV PROMETHEUS_MULTIPROC_DIR=/tmp/prom
EXPOSE 8000
CMD ["sh", "-c", "mkdir -p $PROMETHEUS_MULTIPROC_DIR && cardctl db upgrade && uvicorn card_backend.asgi:app --host 0.0.0.0 --port 8000 --workers ${CARD_WORKERS:-4}"]
