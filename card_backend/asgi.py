"""ASGI entry point for uvicorn workers: ``uvicorn card_backend.asgi:app``."""

from card_backend.app import create_app

app = create_app()
