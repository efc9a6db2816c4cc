"""Result files: saved to disk streamed, bounded, checked, atomic, and resumable by rerunning.

- ``rules``: the decisions without the I/O (:class:`~kie_async.DownloadPolicy`, names, redirects)
- ``part_file``: the temporary file a download is written to, renamed into place once whole
- ``fetch``: the download itself (one file, or every result of a record)
"""
