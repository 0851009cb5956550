"""The ``auditor`` command line: argument parsing, the console, the summary and exit codes.
Everything it runs is below it; nothing below imports it."""
