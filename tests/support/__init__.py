"""Test helpers: servers and daemons (``stack``), the CLI (``cli``), tmux (``terminal``), a running
exchange (``exchange``), gateway stacks (``gateway``), JetStream reads (``streams``), engine
factories, the fault kit. Tests import helpers from here only, never from conftest or from
another test file.
"""
