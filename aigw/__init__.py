"""aigw: a local AI gateway serving the OpenAI HTTP API."""

__version__ = "0.1.0"
