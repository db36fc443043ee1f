"""Submissions with the outcome grading must give each: hostile and broken ones (hostile.py),
and realistic failing ones with their true causes, for the diagnosis (realistic.py)."""
