"""``python -m varpo`` = the ``varpo`` command."""

from varpo.cli import app

app(prog_name="varpo")
