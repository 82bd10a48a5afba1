"""The Textual trading terminal."""
