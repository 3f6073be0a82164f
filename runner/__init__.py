"""workshop-runner: provision one workshop user's environment, step by step."""
