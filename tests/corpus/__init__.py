"""Hostile-input corpora: every door answers bad input with a clear error and loses nothing."""
