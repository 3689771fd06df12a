"""Heads: the frameworks' standard MLPs, and (issue #5) the searched ones."""
