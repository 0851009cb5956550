"""The reference lab: podman networks and containers replicating a certified organisation."""
