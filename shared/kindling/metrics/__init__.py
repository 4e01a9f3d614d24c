"""Metrics: counters, the rebuild, the reports and the report page."""
