"""The error of a query that names a market the exchange does not have.

It lives apart from ``engine`` because the engine may be compiled (mypyc), and a compiled module
cannot define a subclass of a builtin exception such as KeyError; ``engine`` re-exports it.
"""

from __future__ import annotations


class UnknownMarket(KeyError):
    """A query named a market the exchange does not have."""


__all__ = ["UnknownMarket"]
