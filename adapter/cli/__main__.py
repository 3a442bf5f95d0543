"""`python -m adapter.cli`: the `liaison` command."""

from adapter.cli import app

app()
