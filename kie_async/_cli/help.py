"""The ``kie-async bulk --help`` text, kept apart from the jobs-file code so that ``--help``
needs neither the bulk runner nor the converter."""

from __future__ import annotations

import json

__all__ = ["BULK_HELP"]

_FRAME = "https://example.com/f.png"

_CHAIN_EXAMPLE = {
    "kind": "chain",
    "steps": [
        {"kind": "generate", "task_type": "mj_video", "prompt": "waves", "file_urls": [_FRAME]},
        {"kind": "extend", "index": 0, "prompt": "the wave breaks"},
    ],
}

#: ``kie-async bulk --help``: what a jobs file holds, with a line of every kind.
BULK_HELP = """\
Run every job of a jobs file, at most --concurrency at once and within kie.ai's rate limit,
and print a summary. Exit status 1 unless every job succeeded.

The jobs file (JOBS.jsonl) holds one JSON object per line; blank lines and lines starting
with # are skipped. A line's "kind" says what it is: "extend" (the default, so a line without
a kind extends a video), "generate", "upscale", "vary", or "chain". Lines:

  {"task_id": "ee603959", "index": 0, "prompt": "The camera pulls back", "key": "shot-1"}
  {"kind": "generate", "task_type": "mj_txt2img", "prompt": "a lighthouse", "key": "l1"}
  {"kind": "upscale", "task_id": "2584469c", "index": 2}
  {"kind": "vary", "task_id": "2584469c", "index": 0, "watermark": "acme"}
  CHAIN_EXAMPLE

extend: task_id (the video record) and index (0 to 3) are required; optional: prompt (what
happens next; without one the model continues), mode ("manual" or "auto"), watermark,
callback_url, and key (your own name for the job, kept in the journal and the results).
generate: task_type and prompt are required; optional: file_urls, aspect_ratio, version,
speed, variety, stylization, weirdness, ow, video_batch_size, motion, watermark,
enable_translation, callback_url, key. upscale and vary: task_id (an image task) and index
(0 to 3) are required; optional: watermark, callback_url, key.
chain: "steps" is a request line (any kind), then steps of kind "extend" (index, prompt, mode,
watermark, callback_url), "upscale" or "vary" (index, watermark, callback_url) that take
output "index" of the step before, one after another; no task_id (it is the step before's).
Optional: key. With --journal each step is journaled, so a rerun resumes a chain at the step
it reached. Every line is checked before anything is sent.""".replace(
    "CHAIN_EXAMPLE", json.dumps(_CHAIN_EXAMPLE)
)
