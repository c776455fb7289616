"""Internals of orrery.lux._cannon: private, no public API."""
