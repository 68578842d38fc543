"""``python -m neurogshn.cli`` (and ``torchrun -m neurogshn.cli``): the ``neurogshn`` command."""

from neurogshn.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
