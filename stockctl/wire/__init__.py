"""What crosses a process: subjects and keys, stream definitions, and every message shape.

Nothing here opens a connection; only :mod:`stockctl.wire.streams` does I/O, through the
JetStream context its caller passes. Each module is a contract between two processes;
change one and both sides change.
"""
