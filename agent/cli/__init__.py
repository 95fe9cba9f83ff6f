"""The `recdock` command line: one module per command or command group, on a thin click layer."""
