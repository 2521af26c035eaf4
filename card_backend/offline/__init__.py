"""Offline redemptions: sync of what points served without the backend, and the conflicts list."""
