"""``python -m kie_async.testing --port 8765``: see :mod:`kie_async.testing._main`."""

from ._main import main

if __name__ == "__main__":
    main()
