"""The shared kernel: clock, errors, the bus envelope, settings, secrets, observability, HTTP helpers."""
