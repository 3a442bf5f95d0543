"""Real parts for tests: servers on loopback, a PostgreSQL instance, paths to the examples."""
