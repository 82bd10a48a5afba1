"""The trading terminal's panels, one widget per module: they render what the app routes to them."""
