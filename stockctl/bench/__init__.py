"""``stockctl bench``: performance measured on this machine, each figure beside its baseline.

Imported only when a bench runs (an import-linter contract holds everything else off it).
"""
