"""``python -m varpo.experiments sweep|report …`` (the same commands as ``varpo sweep`` / ``varpo report``)."""

from varpo.experiments.cli import app

app()
