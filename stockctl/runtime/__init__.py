"""Daemon plumbing: lifecycle, signals, status file, health and metrics, retries, connections."""
