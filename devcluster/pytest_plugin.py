"""pytest fixtures for the local control plane (filled in by issue 2)."""
