"""What crosses a process: subjects and keys, stream definitions, and every message shape.

Pure: nothing here does I/O. Each module is a contract between two processes; change one
and both sides change.
"""
