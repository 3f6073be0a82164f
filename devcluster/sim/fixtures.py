"""pytest fixtures for the simulated operators and the process kubelet (filled in by issue 3)."""
