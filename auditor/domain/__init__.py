"""The domain: the types every layer shares (inventory, findings, attempts, facts), the
protocols probes are handed, the error root and atomic file writing. It imports nothing of the
project, so anything may import it."""
