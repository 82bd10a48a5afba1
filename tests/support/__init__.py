"""Test helpers: process launchers, waiting, engine factories, fault kit. Tests import helpers
from here only, never from conftest or from another test file.
"""
