"""The HTTP layer: a thin FastAPI app over the Gateway."""
