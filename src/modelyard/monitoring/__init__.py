"""Watching modelyard itself: alerts and the webhooks that deliver them."""
