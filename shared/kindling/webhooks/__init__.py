"""Outbound webhooks: Standard Webhooks signing and verification."""
