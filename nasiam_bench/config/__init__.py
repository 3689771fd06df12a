"""Experiment specs: their schema, the catalogue's profiles and recipes layered under a spec, and their checks."""
