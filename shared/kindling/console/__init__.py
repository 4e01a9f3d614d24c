"""The operator console: a page for people over the admin API."""
