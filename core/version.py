"""The service's version, reported by the API document and the client (pyproject.toml carries the same)."""

VERSION = "0.1.0"
