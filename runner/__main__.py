"""`python -m runner` is the same entrypoint as the `workshop-runner` console script."""

from runner.cli import main

raise SystemExit(main())
