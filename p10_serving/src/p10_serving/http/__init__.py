"""The HTTP surface: the raw-ASGI hot path (hotpath.py) in front of FastAPI routers grouped by surface (v1, v2,
admin = lifecycle, ops), the guard (guard.py) and the one error table (errors.py)."""
