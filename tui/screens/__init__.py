"""Screens of the trading terminal."""
