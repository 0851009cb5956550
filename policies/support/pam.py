"""PAM stacks as a service runs them: includes and substacks expanded in place, and whether an
earlier line can end the stack or jump over a later one (pam.conf(5))."""

from __future__ import annotations

from probes.parsers.pam import PAM_DIR, PamLine

#: Deeper include chains than this are a loop or a mistake: nothing beyond is read.
MAX_INCLUDE_DEPTH = 16


def pam_stack(files: dict[str, list[PamLine]], path: str, kind: str) -> list[PamLine]:
    """The lines of type ``kind`` (auth, session, ...) the service file ``path`` runs."""
    return _expand(files, path, kind, 0, frozenset())


def _expand(
    files: dict[str, list[PamLine]], path: str, kind: str, depth: int, seen: frozenset[str]
) -> list[PamLine]:
    if depth > MAX_INCLUDE_DEPTH or path in seen:
        return []
    stack: list[PamLine] = []
    for line in files.get(path, []):
        if line.includes and (line.control == "@include" or line.type == kind):
            target = line.module if line.module.startswith("/") else f"{PAM_DIR}/{line.module}"
            stack += _expand(files, target, kind, depth + 1, seen | {path})
        elif line.type == kind:
            stack.append(line)
    return stack


def may_skip(stack: list[PamLine], index: int) -> bool:
    """Can an earlier line end the stack (sufficient, done) or jump over this one?"""
    for earlier, line in enumerate(stack[:index]):
        actions = line.actions
        if line.control == "sufficient" or "done" in actions.values():
            return True
        jumps = [int(a) for a in actions.values() if a.isdigit()]
        if jumps and earlier + max(jumps) >= index:
            return True
    return False
