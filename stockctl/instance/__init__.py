"""The local instance: its embedded servers, the supervisor that runs the daemons, start/stop."""
