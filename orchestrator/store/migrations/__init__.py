"""Alembic migrations of the run store's schema (`workflow db upgrade`)."""
