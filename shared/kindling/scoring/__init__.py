"""Scoring: rules and config, the scoring service, and the MQL hand-off to sales."""
