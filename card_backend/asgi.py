"""ASGI entry point for uvicorn workers: ``uvicorn card_backend.asgi:app``.

The long-lived objects built at start-up (the app, its routes, the settings, imported modules) are moved
out of the garbage collector's sight (``gc.freeze``) and young-generation collections are made rarer: the
redemption path allocates many short-lived objects, and full scans of the start-up heap on every few
thousand allocations showed in its profile.
"""

import gc

from card_backend.app import create_app

app = create_app()
gc.collect()
gc.freeze()
gc.set_threshold(20_000, 50, 100)
