"""Every exit code of the ``auditor`` commands, in one place (docs/architecture.md).

``audit``, ``verify``, ``report``, ``bundle`` and ``lab`` use 0 to 3; ``watch --once`` adds 4 and 75.
A code means the same thing wherever it appears.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  #: no fail and no inconclusive finding (watch: stopped normally, nothing changed)
    FAIL = 1  #: at least one control failed (verify: the evidence is not intact)
    INCONCLUSIVE = 2  #: no fail, but at least one control could not be decided
    CANNOT_RUN = 3  #: bad input, nothing in scope, or the environment is not usable
    CHANGED = 4  #: watch --once: at least one verdict changed since the last finished run
    BUSY = 75  #: watch --once: another run holds the state folder's lock (EX_TEMPFAIL: try later)
