"""Integrations with other training engines (top floor: they import everything below)."""
