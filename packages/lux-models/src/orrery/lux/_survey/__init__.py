"""Internals of orrery.lux._survey: private, no public API."""
