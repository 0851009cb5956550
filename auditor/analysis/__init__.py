"""Questions asked of a stored run's model, without probing: path queries, what-if changes."""
