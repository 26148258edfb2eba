"""The Python interface: reports from model objects (`report`, `Report`) and from a training loop (`Monitor`).

Imported by `lstmviz_cli.report`, `lstmviz_cli.Report` and `lstmviz_cli.Monitor` on first use (they
load torch), never by `import lstmviz_cli` or the CLI.
"""
