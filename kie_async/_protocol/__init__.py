"""What kie answers and what it means (pure: no I/O).

- ``wire``: the one cattrs converter, kie's camelCase and every quirk of its payloads
- ``records``: :class:`~kie_async.TaskRecord` and :class:`~kie_async.TaskStatus`
- ``envelope``: what to send, and :func:`~kie_async._protocol.envelope.decipher`, the one reader
  of kie's ``code``
"""
