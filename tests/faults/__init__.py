"""Fault injection: kill -9, server restarts and pauses under load; nothing lost or doubled."""
