"""Validate OSCAL assessment-results files with compliance-trestle's OSCAL 1.1.x models.

Runs under the interpreter of ``.venv-oscal`` (made by ``make setup``), not the auditor's: the
test calls it as a child process. Prints one JSON object, ``{path: [error, ...]}``, and exits 1
when any file has errors. Trestle's models are generated from NIST's 1.1.x JSON schemas and
forbid unknown fields. Their ``oscal-version`` validator is switched off in trestle, so the
version is checked here against trestle's own pattern (1.1.0 to 1.1.3).
"""

import json
import pathlib
import re
import sys

from trestle.oscal import OSCAL_VERSION_REGEX
from trestle.oscal.assessment_results import AssessmentResults


def errors_of(path: pathlib.Path) -> list[str]:
    try:
        model = AssessmentResults.oscal_read(path)
    except Exception as exc:  # trestle wraps pydantic's errors in its own types
        return [line for line in str(exc).splitlines() if line.strip()]
    version = model.metadata.oscal_version.__root__
    if not re.match(OSCAL_VERSION_REGEX, version):
        return [
            f"oscal-version {version!r} is not one these models describe ({OSCAL_VERSION_REGEX})"
        ]
    return []


def main(paths: list[str]) -> int:
    found = {p: errors_of(pathlib.Path(p)) for p in paths}
    print(json.dumps(found, ensure_ascii=False))
    return 1 if any(found.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
