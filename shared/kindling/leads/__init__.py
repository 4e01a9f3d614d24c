"""Leads: profiles, identities and timelines, applied exactly once."""
