"""`python -m grpolab ...`: the same commands as `grpolab ...`. Sweeps, the self-launch and
SLURM scripts start training through it, so every start goes through one entry point."""

import sys

from grpolab.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
