"""``python -m mm_deepz``: the command line (what ``torchrun -m mm_deepz train`` starts per process)."""

from .cli import main

main()
