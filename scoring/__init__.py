"""Scoring: face analysis, likeness to the reference photos, artifact checks and pack ranking."""
