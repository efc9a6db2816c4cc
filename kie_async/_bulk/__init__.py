"""Many tasks: bulk runs, chains, the journal, budgets and dry runs.

- ``run``: :class:`~kie_async.BulkRun` and the runner feeding it requests; ``many``: ``run_many``
- ``tracker``: one run's state and each request's way through it; ``poller``: the heap poller
- ``outcomes``: how each request ended, and the progress counts
- ``chains``: requests whose input is the step before's output
- ``journal``: the append-only journal and its whole line format (events, keys, requests);
  ``journal_lock``: one run per journal
- ``results``, ``results_download``: what a journal's jobs produced, and saving it
- ``preflight``: the account check before the first create
- ``prices``, ``budget``, ``learning``, ``plan``: credits per create, the spending cap, prices
  learnt from the balance, and the dry run
"""
