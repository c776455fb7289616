"""Internals of orrery.sbi._flows.flows: private, no public API."""
