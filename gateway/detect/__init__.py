"""Detectors: readings in, alerts out. All on the gateway, all explainable."""
