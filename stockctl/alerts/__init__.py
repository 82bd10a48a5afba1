"""Price alerts: the rules and their evaluation index (pure), and their Redis store."""
