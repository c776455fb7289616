"""Internals of orrery.sbi._store.write: private, no public API."""
