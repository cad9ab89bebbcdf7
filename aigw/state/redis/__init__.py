"""The Redis state backend (`[state] backend = "redis"`): API keys and rate limits that several
aigw instances share."""
