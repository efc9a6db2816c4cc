"""What you ask for: one frozen, validated class per kind of Midjourney task (pure, no I/O).

- ``common``: what every kind shares (the kind enum, the checks, the wire body, the fingerprint)
- ``generate_rules``: the vocabulary and rules of ``POST /api/v1/mj/generate``
- ``generate``: :class:`~kie_async.GenerateRequest`
- ``image_actions``: :class:`~kie_async.UpscaleRequest` and :class:`~kie_async.VaryRequest`
- ``extend``: :class:`~kie_async.ExtendRequest`
- ``registry``: the one list of kinds (``TaskRequest``, ``REQUEST_TYPES``), ``kind_of``

A new kind is one module here plus its line in the registry; the CLI command (``_cli/kinds.py``)
and the fake server's rules (``testing/_kinds.py``) stay separate on purpose.
"""
