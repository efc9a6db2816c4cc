"""The ``generate``, ``upscale`` and ``vary`` commands of ``kie-async``: their flags, and the
request each builds from them (``_commands`` submits it, prints the task id and, with ``--wait``,
the result, as ``extend`` does).

Building the request checks every field, so bad input is an error before anything is sent.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from .poll_options import add_poll_options, poll_seconds

# The request classes are imported where a request is built, not here: `kie-async --help` and
# a usage error need none of them (tests/test_cli.py checks it).
if TYPE_CHECKING:
    from .._kinds.generate import GenerateRequest
    from .._kinds.image_actions import UpscaleRequest, VaryRequest
    from .._kinds.registry import TaskRequest

__all__ = ["KIND_COMMANDS", "KIND_FLAGS", "KindCommand"]

#: The flags of request fields whose flag is not simply their name with dashes, for errors.
KIND_FLAGS = {
    "task_type": "--type",
    "file_urls": "--file-url",
    "aspect_ratio": "--aspect-ratio",
    "video_batch_size": "--batch-size",
    "enable_translation": "--translate",
    **{name: f"--{name}" for name in ("version", "speed", "variety", "stylization", "weirdness")},
    **{name: f"--{name}" for name in ("ow", "motion")},
}


@attrs.frozen
class KindCommand:
    """A command that submits one request: its help, its flags, and how it builds the request."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    build: Callable[[argparse.Namespace], TaskRequest]


def add_common(parser: argparse.ArgumentParser) -> None:
    """The options every create command shares: watermark, callback, and waiting."""
    parser.add_argument("--watermark", help="a watermark text for the result")
    parser.add_argument("--callback-url", metavar="URL", help="kie.ai POSTs the result here")
    parser.add_argument("--wait", action="store_true", help="wait for the result and print it")
    parser.add_argument(
        "--timeout",
        "--wait-timeout",
        type=poll_seconds("timeout"),
        metavar="S",
        help="with --wait: give up after S seconds",
    )
    add_poll_options(parser)


def _add_generate(parser: argparse.ArgumentParser) -> None:
    from .._kinds.generate_rules import GENERATE_TYPES

    parser.add_argument("prompt", metavar="PROMPT", help="what to make; at most 2000 characters")
    parser.add_argument(
        "--type",
        dest="task_type",
        default="mj_txt2img",
        metavar="TYPE",
        help=f"the task type: {', '.join(sorted(GENERATE_TYPES))} (mj_txt2img)",
    )
    parser.add_argument(
        "--file-url",
        dest="file_urls",
        action="append",
        metavar="URL",
        help="an input image (repeat for several; exactly one for video)",
    )
    parser.add_argument("--aspect-ratio", metavar="W:H", help="e.g. 16:9")
    parser.add_argument("--version", metavar="V", help="7, 6.1, 6, 5.2, 5.1 or niji6")
    parser.add_argument("--speed", help="relaxed, fast or turbo (not for video or omni)")
    parser.add_argument("--variety", type=int, metavar="N", help="0-100, in steps of 5")
    parser.add_argument("--stylization", type=int, metavar="N", help="0-1000")
    parser.add_argument("--weirdness", type=int, metavar="N", help="0-3000")
    parser.add_argument("--ow", type=int, metavar="N", help="omni weight, 1-1000 (omni only)")
    parser.add_argument(
        "--batch-size", type=int, metavar="N", help="videos in the record: 1, 2 or 4 (video only)"
    )
    parser.add_argument("--motion", help="high or low (video only; high)")
    parser.add_argument(
        "--translate", action="store_true", help="let kie.ai translate a non-English prompt"
    )
    add_common(parser)


def _generate(args: argparse.Namespace) -> GenerateRequest:
    from .._kinds.generate import GenerateRequest

    return GenerateRequest(
        args.task_type,
        args.prompt,
        file_urls=args.file_urls,
        aspect_ratio=args.aspect_ratio,
        version=args.version,
        speed=args.speed,
        variety=args.variety,
        stylization=args.stylization,
        weirdness=args.weirdness,
        ow=args.ow,
        video_batch_size=args.batch_size,
        motion=args.motion,
        watermark=args.watermark,
        enable_translation=True if args.translate else None,
        callback_url=args.callback_url,
    )


def _add_image_action(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task_id", metavar="TASK_ID", help="the image task's id")
    parser.add_argument(
        "--index", type=int, required=True, help="which of its 4 images, 0 to 3 (required)"
    )
    add_common(parser)


def _upscale(args: argparse.Namespace) -> UpscaleRequest:
    from .._kinds.image_actions import UpscaleRequest

    return UpscaleRequest(
        args.task_id, args.index, watermark=args.watermark, callback_url=args.callback_url
    )


def _vary(args: argparse.Namespace) -> VaryRequest:
    from .._kinds.image_actions import VaryRequest

    return VaryRequest(
        args.task_id, args.index, watermark=args.watermark, callback_url=args.callback_url
    )


#: The commands, in the order ``--help`` lists them (before ``extend``).
KIND_COMMANDS: dict[str, KindCommand] = {
    "generate": KindCommand(
        "generate images or a video; print the new task id", _add_generate, _generate
    ),
    "upscale": KindCommand(
        "upscale one image of an image task; print the new task id", _add_image_action, _upscale
    ),
    "vary": KindCommand(
        "make variations of one image; print the new task id", _add_image_action, _vary
    ),
}
