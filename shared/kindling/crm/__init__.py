"""CRM: inbound webhooks per provider, one config model, and sales policy on leads."""
