"""Chains: requests whose input is the output of the step before ("generate a video, then
extend video 0 of it, then extend that").

Pure: what a chain is, how it is checked, and its fingerprint (with the spelling of its steps
a jobs file uses). A bulk run runs chains (:mod:`kie_async._bulk.many`); the journal keys
their steps (:mod:`kie_async._bulk.journal`); nothing here knows ``KieClient``.

A :class:`Chain` is a first request of any kind, then steps (:class:`ExtendStep`,
:class:`UpscaleStep`, :class:`VaryStep`), each naming which output of the step before it takes
(``index``). A step becomes a full request only when the step before it has a task id.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Union

import attrs

from .._kinds.common import digest, invalid
from .._kinds.extend import ExtendMode, ExtendRequest
from .._kinds.generate import GenerateRequest
from .._kinds.image_actions import UpscaleRequest, VaryRequest
from .._kinds.registry import REQUEST_TYPES, TaskRequest

__all__ = [
    "BulkItem",
    "Chain",
    "ChainStep",
    "ExtendStep",
    "UpscaleStep",
    "VaryStep",
    "fields_json",
    "probe_requests",
    "step_json",
]

#: A placeholder task id, to validate a step's fields when the chain is built.
_PROBE = "chain-step"

Media = Literal["image", "video"]


@attrs.frozen(init=False)
class ExtendStep:
    """A chain step extending video ``index`` of the step before (a video generation or an
    extension) with ``prompt`` (manual) or without one (auto), as :class:`ExtendRequest` does.

    Raises:
        ValidationError: a field is invalid (checked when the step is built).

    Example::

        >>> ExtendStep(0, "the wave breaks").request("ee603959").describe()
        'extend ee603959[0] (manual)'
    """

    takes: ClassVar[Media] = "video"
    makes: ClassVar[Media] = "video"

    index: int
    prompt: str | None
    mode: ExtendMode
    watermark: str | None
    callback_url: str | None

    def __init__(
        self,
        index: int = 0,
        prompt: str | None = None,
        *,
        mode: ExtendMode | str | None = None,
        watermark: str | None = None,
        callback_url: str | None = None,
    ) -> None:
        probe = ExtendRequest(
            _PROBE, index, prompt, mode=mode, watermark=watermark, callback_url=callback_url
        )
        self.__attrs_init__(index, prompt, probe.mode, watermark, callback_url)

    def request(self, task_id: str) -> ExtendRequest:
        """The :class:`ExtendRequest` of this step, once the step before made ``task_id``."""
        return ExtendRequest(
            task_id,
            self.index,
            self.prompt,
            mode=self.mode,
            watermark=self.watermark,
            callback_url=self.callback_url,
        )


@attrs.frozen
class _ImageStep:
    takes: ClassVar[Media] = "image"
    makes: ClassVar[Media] = "image"
    _request_type: ClassVar[type[UpscaleRequest] | type[VaryRequest]]

    index: int
    watermark: str | None = attrs.field(default=None, kw_only=True)
    callback_url: str | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        self._request_type(
            _PROBE, self.index, watermark=self.watermark, callback_url=self.callback_url
        )


@attrs.frozen
class UpscaleStep(_ImageStep):
    """A chain step upscaling image ``index`` (0-3) of the step before (an image generation or
    a variation), as :class:`UpscaleRequest` does.

    Raises:
        ValidationError: a field is invalid (checked when the step is built).

    Example::

        >>> UpscaleStep(2).request("2584469c").body()
        {'taskId': '2584469c', 'imageIndex': 2}
    """

    _request_type: ClassVar[type[UpscaleRequest]] = UpscaleRequest

    def request(self, task_id: str) -> UpscaleRequest:
        """The :class:`UpscaleRequest` of this step, once the step before made ``task_id``."""
        return UpscaleRequest(
            task_id, self.index, watermark=self.watermark, callback_url=self.callback_url
        )


@attrs.frozen
class VaryStep(_ImageStep):
    """A chain step making variations of image ``index`` (0-3) of the step before, as
    :class:`VaryRequest` does.

    Raises:
        ValidationError: a field is invalid (checked when the step is built).
    """

    _request_type: ClassVar[type[VaryRequest]] = VaryRequest

    def request(self, task_id: str) -> VaryRequest:
        """The :class:`VaryRequest` of this step, once the step before made ``task_id``."""
        return VaryRequest(
            task_id, self.index, watermark=self.watermark, callback_url=self.callback_url
        )


#: A step after a chain's first request.
ChainStep = Union[ExtendStep, UpscaleStep, VaryStep]  # noqa: UP007
_STEP_TYPES = (ExtendStep, UpscaleStep, VaryStep)


def _makes(request: TaskRequest) -> Media:
    if isinstance(request, GenerateRequest):
        return "video" if request.is_video else "image"
    return "video" if isinstance(request, ExtendRequest) else "image"


def fields_json(item: Any, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``item``'s fields by their Python names (as a jobs file spells them), absent ones and
    ``skip`` left out."""
    data: dict[str, Any] = {}
    for field in attrs.fields(type(item)):
        value = getattr(item, field.name)
        if field.name in skip or value is None or value == ():
            continue
        data[field.name] = list(value) if isinstance(value, tuple) else value
    return data


def step_json(step: ChainStep) -> dict[str, Any]:
    """A step as a jobs file's chain line spells it (its kind, and its fields)."""
    kind = step.request(_PROBE).kind.value
    if isinstance(step, ExtendStep):
        mode = "manual" if step.mode is ExtendMode.MANUAL else "auto"
        return {"kind": kind, **fields_json(step, skip=("mode",)), "mode": mode}
    return {"kind": kind, **fields_json(step)}


@attrs.frozen(init=False)
class Chain:
    """Requests run one after another, each later step taking an output of the one before.

    The first item is any request (:class:`GenerateRequest`, :class:`UpscaleRequest`,
    :class:`VaryRequest`, :class:`ExtendRequest`); each later one is a step that names, by
    ``index``, which output of the step before it takes: :class:`ExtendStep` (a video),
    :class:`UpscaleStep` or :class:`VaryStep` (an image). Give it to
    :meth:`KieClient.run_many` like any request: the steps run in order, each one journaled,
    and the chain yields one outcome (the last step's, with every step's in ``steps``). A step
    that fails ends the chain there.

    Args:
        first: the first request.
        steps: the steps after it, at least one.
        key: your own identifier for the chain in a bulk journal, instead of its content (keep
            the key to keep a journal's progress when you edit the chain).

    Raises:
        ValidationError: no step, an item of the wrong type, or a step that cannot take what
            the step before makes (an extension of images, an upscale of a video).

    Example::

        >>> chain = Chain(
        ...     GenerateRequest.video("a lighthouse", image_url="https://example.com/f.png"),
        ...     ExtendStep(0, "the wave breaks"),
        ...     ExtendStep(0, "the light goes out"),
        ... )
        >>> chain.describe()
        "chain of 3: generate mj_video 'a lighthouse' (1 video) then extend, extend"
    """

    first: TaskRequest
    steps: tuple[ChainStep, ...]
    key: str | None

    def __init__(self, first: TaskRequest, *steps: ChainStep, key: str | None = None) -> None:
        self.__attrs_init__(first, tuple(steps), key)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.first, REQUEST_TYPES):
            raise invalid("steps[0]", f"must be a request, not {type(self.first).__name__}")
        if not self.steps:
            raise invalid("steps", "a chain needs at least one step after its first request")
        made = _makes(self.first)
        for number, step in enumerate(self.steps, 1):
            if not isinstance(step, _STEP_TYPES):
                raise invalid(
                    f"steps[{number}]",
                    f"must be an ExtendStep, UpscaleStep or VaryStep, not {type(step).__name__}",
                )
            if step.takes != made:
                article = "an" if step.takes == "image" else "a"
                raise invalid(
                    f"steps[{number}]",
                    f"{type(step).__name__} takes {article} {step.takes}, but step "
                    f"{number - 1} makes {made}s",
                )
            made = step.makes
        if self.key is not None and (not isinstance(self.key, str) or not self.key):
            raise invalid("key", "must be a non-empty string when given")

    def describe(self) -> str:
        """A short human description, e.g. ``"chain of 3: generate ... then extend, extend"``."""
        label = f" key={self.key}" if self.key else ""
        later = ", ".join(type(step).__name__.removesuffix("Step").lower() for step in self.steps)
        return f"chain of {len(self.steps) + 1}: {self.first.describe()} then {later}{label}"

    def fingerprint(self) -> str:
        """A stable digest identifying this chain: its ``key`` if given, else its content."""
        if self.key is not None:
            return "key:" + self.key
        return digest(
            {
                "first": {"kind": self.first.kind.value, **self.first.body()},
                "steps": [step_json(step) for step in self.steps],
            }
        )


def probe_requests(chain: Chain) -> tuple[TaskRequest, ...]:
    """Every request ``chain`` can create, later steps with a placeholder source (to price
    them)."""
    return (chain.first, *(step.request(_PROBE) for step in chain.steps))


#: Anything a bulk run accepts.
BulkItem = Union[TaskRequest, Chain]  # noqa: UP007
