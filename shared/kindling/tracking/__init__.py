"""Tracking: the Segment spec at the edge, bots, and the website tag."""
