"""Grading side of the BatchNorm kit: reference implementation, hidden checks, mistakes.

Never released to students. Grade cells call ``bn_grader.check("<check id>")``.
"""

from .runner import check

__all__ = ["check"]
