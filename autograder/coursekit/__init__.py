"""Instructor tooling for the BatchNorm kit: release, validate, grade, feedback, export.

Run as ``python -m coursekit <verb>`` with ``autograder/`` on ``PYTHONPATH`` (the Makefile does
this). Each verb lives in its own module; :mod:`coursekit.cli` is a thin layer over them.
"""
