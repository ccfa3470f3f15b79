"""warroom's HTTP API: alert intake today, the console's endpoints later.

``server.create_app`` composes the application from settings and a store; ``server.ServerThread``
runs it under uvicorn. Every error leaves as JSON ``{"error": ..., "reason": ...}`` (``errors``).
"""
