"""``python -m auditor``: the same as the ``auditor`` command."""

from auditor.cli.main import main

main()
