"""One task: create it, poll it, hear its callback.

- ``submit``: a create and a ``record-info`` read, below the client
- ``handle``: :class:`~kie_async.TaskHandle`, the one place that sleeps between polls
- ``callback_race``: a wait that races the poll loop against the task's callback
- ``errors``: the errors that carry a task's record or request
"""
