"""Internals of orrery.sbi._posterior: private, no public API."""
