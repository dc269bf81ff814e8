"""Hostile and broken submissions for the grading engine's tests, and the small course they target."""
