"""Hostile and broken submissions with the outcome grading must give each (tests, demo, bench)."""
