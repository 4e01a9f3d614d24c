"""Programs: the engine, its config and segments, the service that runs it, and due work."""
