"""Durable state: one SQLModel schema on SQLite (default) or PostgreSQL (same code)."""
