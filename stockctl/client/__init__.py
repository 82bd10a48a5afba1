"""The Python client of a running instance: REST, WebSocket streams, login and credentials."""
