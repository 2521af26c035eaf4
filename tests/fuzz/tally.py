"""Counts of what the OpenAPI fuzzer sent, printed at the end of the run."""

from collections import Counter

REQUESTS = 0
BY_STATUS: Counter[int] = Counter()
OPERATIONS: set[str] = set()
ROLES: set[str] = set()
