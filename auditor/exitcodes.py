"""Exit codes of the ``auditor`` command, named in one place (ARCHITECTURE.md contract)."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  #: no fail and no inconclusive finding
    FAIL = 1  #: at least one control failed
    INCONCLUSIVE = 2  #: no fail, but at least one control could not be decided
    CANNOT_RUN = 3  #: bad input, nothing in scope, or the environment is not usable
