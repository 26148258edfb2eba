"""`python -m lstmviz_cli` runs the same CLI as the `lstmviz` console script."""

from lstmviz_cli.cli import run

run()
