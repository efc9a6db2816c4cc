"""``python -m kie_async``: the ``kie-async`` command-line tool."""

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
