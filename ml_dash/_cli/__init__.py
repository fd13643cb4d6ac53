"""The read side of the ``ml-dash`` command: one module per subcommand (``HELP``, ``configure(parser)``,
``run(args) -> exit code``), listed in ``ml_dash/cli.py``. Heavy imports happen inside ``run``."""
