"""Email: settings and templates, rendering, sending, links, and what SES tells us."""
