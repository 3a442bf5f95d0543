"""Durable state: one SQLModel schema on SQLite (default) or PostgreSQL (same code)."""

from adapter.store.db import engine_for, get_engine, init_db, session_scope

__all__ = ["engine_for", "get_engine", "init_db", "session_scope"]
