"""``python -m estimator`` runs the gpucost CLI."""

from estimator.cli import run

run()
