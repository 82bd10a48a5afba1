"""Real daemons, real nats-server and valkey-server, real sockets."""
