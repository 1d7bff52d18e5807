"""Reusable Qt pieces: table models and table helpers, charts, live curves, thumbnails."""
