"""Bulk loading of the registry: the families CSV import (``csvformat`` → ``staging`` → ``service``)."""
