"""stockctl: a terminal-first market and exchange sandbox."""

__version__ = "0.1.0"
