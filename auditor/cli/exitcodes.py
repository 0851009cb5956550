"""Every exit code of the ``auditor`` commands, in one place (docs/architecture.md).

``audit``, ``verify``, ``report``, ``bundle`` and ``lab`` use 0 to 3; ``verify`` adds 5;
``watch --once`` adds 4 and 75. A code means the same thing wherever it appears.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  #: no fail and no inconclusive finding (verify: intact and signed by the trusted key)
    FAIL = 1  #: at least one control failed (verify: not intact, or signed by another key)
    INCONCLUSIVE = 2  #: no fail, but at least one control could not be decided
    CANNOT_RUN = 3  #: bad input, nothing in scope, or the environment is not usable
    CHANGED = 4  #: watch --once: at least one verdict changed since the last finished run
    #: verify: intact, but nothing shows who made it: a run folder (never signed), an unsigned
    #: bundle, or a signed one checked without --trusted-key / --trusted-fingerprint. Not 0:
    #: anyone can make files whose hashes agree, and sign them with a key of their own.
    UNAUTHENTICATED = 5
    BUSY = 75  #: watch --once: another run holds the state folder's lock (EX_TEMPFAIL: try later)
