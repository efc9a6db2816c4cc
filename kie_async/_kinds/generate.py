"""GenerateRequest: a Midjourney generation (images from text or images, a video from an image).

Pure: no I/O happens here. Every rule of ``POST /api/v1/mj/generate`` that kie.ai documents is
checked when the request is constructed (the rules themselves are in ``generate_rules``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import attrs

from .common import TaskKind, fingerprint_of, invalid, short, wire, wire_body
from .generate_rules import (
    GENERATE_TYPES,
    VIDEO_TYPES,
    AspectRatio,
    GenerateTaskType,
    Motion,
    Speed,
    Version,
    check_generate,
    file_urls_of,
    version_of,
)

__all__ = ["GenerateRequest"]


@attrs.frozen(init=False)
class GenerateRequest:
    """One Midjourney generation: images from text or images, or a video from an image.

    The convenience constructors read better than the full form and refuse combinations kie.ai
    does not accept by leaving those arguments out: :meth:`image`, :meth:`style_reference`,
    :meth:`omni_reference` and :meth:`video`. Everything is checked here, before any request
    is sent; absent fields are left out of the body.

    Args:
        task_type: ``"mj_txt2img"``, ``"mj_img2img"``, ``"mj_style_reference"``,
            ``"mj_omni_reference"``, ``"mj_video"`` or ``"mj_video_hd"``.
        prompt: what to make; at most 2000 characters.
        file_urls: the input image URLs (``fileUrls``): at least one for img2img, style and
            omni reference, exactly one for video, none for txt2img. A single URL string is
            taken as a one-item list.
        aspect_ratio: ``"1:2"``, ``"9:16"``, ``"2:3"``, ``"3:4"``, ``"5:6"``, ``"6:5"``,
            ``"4:3"``, ``"3:2"``, ``"1:1"``, ``"16:9"`` or ``"2:1"``.
        version: ``"7"``, ``"6.1"``, ``"6"``, ``"5.2"``, ``"5.1"`` or ``"niji6"`` (the numbers
            ``7`` or ``6.1`` work too).
        speed: ``"relaxed"``, ``"fast"`` or ``"turbo"``; not for video or omni reference.
        variety: 0-100, in steps of 5.
        stylization: 0-1000.
        weirdness: 0-3000.
        ow: the omni weight, 1-1000; omni reference only.
        video_batch_size: how many videos the record will hold, 1, 2 or 4 (kie's default 1);
            video only.
        motion: ``"high"`` or ``"low"``; video only, and always sent for video (``"high"``,
            kie's default, unless given), as kie's docs describe it as required there.
        watermark: a watermark text (``waterMark``).
        enable_translation: let kie.ai translate a non-English prompt (default false).
        callback_url: an absolute http(s) URL kie.ai POSTs the result to when the task ends.
        key: your own identifier for this request, used by bulk journals instead of its content.

    Raises:
        ValidationError: a field is invalid or does not fit the task type; the error names the
            field and the reason.

    Example::

        >>> GenerateRequest.image("a lighthouse in a storm", aspect_ratio="16:9").body()
        {'taskType': 'mj_txt2img', 'prompt': 'a lighthouse in a storm', 'aspectRatio': '16:9'}
        >>> GenerateRequest.video("waves", image_url="https://example.com/f.png").task_type
        'mj_video'
    """

    kind: ClassVar[TaskKind] = TaskKind.GENERATE
    endpoint: ClassVar[str] = "/api/v1/mj/generate"
    task_types: ClassVar[frozenset[str]] = frozenset(GENERATE_TYPES)

    task_type: str = attrs.field(metadata=wire("taskType"))
    prompt: str = attrs.field(metadata=wire("prompt"))
    file_urls: tuple[str, ...] = attrs.field(metadata=wire("fileUrls"))
    aspect_ratio: str | None = attrs.field(metadata=wire("aspectRatio"))
    version: str | None = attrs.field(metadata=wire("version"))
    speed: str | None = attrs.field(metadata=wire("speed"))
    variety: int | None = attrs.field(metadata=wire("variety"))
    stylization: int | None = attrs.field(metadata=wire("stylization"))
    weirdness: int | None = attrs.field(metadata=wire("weirdness"))
    ow: int | None = attrs.field(metadata=wire("ow"))
    video_batch_size: int | None = attrs.field(metadata=wire("videoBatchSize"))
    motion: str | None = attrs.field(metadata=wire("motion"))
    watermark: str | None = attrs.field(metadata=wire("waterMark"))
    enable_translation: bool | None = attrs.field(metadata=wire("enableTranslation"))
    callback_url: str | None = attrs.field(metadata=wire("callBackUrl"))
    key: str | None = attrs.field(metadata=wire(None))

    def __init__(
        self,
        task_type: GenerateTaskType | str,
        prompt: str,
        *,
        file_urls: Sequence[str] | str | None = None,
        aspect_ratio: AspectRatio | str | None = None,
        version: Version | str | float | None = None,
        speed: Speed | str | None = None,
        variety: int | None = None,
        stylization: int | None = None,
        weirdness: int | None = None,
        ow: int | None = None,
        video_batch_size: int | None = None,
        motion: Motion | str | None = None,
        watermark: str | None = None,
        enable_translation: bool | None = None,
        callback_url: str | None = None,
        key: str | None = None,
    ) -> None:
        if motion is None and task_type in VIDEO_TYPES:
            motion = "high"
        self.__attrs_init__(
            task_type,
            prompt,
            file_urls_of(file_urls),
            aspect_ratio,
            version_of(version),
            speed,
            variety,
            stylization,
            weirdness,
            ow,
            video_batch_size,
            motion,
            watermark,
            enable_translation,
            callback_url,
            key,
        )

    def __attrs_post_init__(self) -> None:
        check_generate(self)

    # -- convenience constructors ----------------------------------------------------------------

    @classmethod
    def image(
        cls,
        prompt: str,
        *,
        image_urls: Sequence[str] | str | None = None,
        aspect_ratio: AspectRatio | str | None = None,
        version: Version | str | float | None = None,
        speed: Speed | str | None = None,
        variety: int | None = None,
        stylization: int | None = None,
        weirdness: int | None = None,
        watermark: str | None = None,
        enable_translation: bool | None = None,
        callback_url: str | None = None,
        key: str | None = None,
    ) -> GenerateRequest:
        """Four images from a prompt (``mj_txt2img``), or from a prompt and input images
        (``mj_img2img``) when ``image_urls`` is given.

        Raises:
            ValidationError: see :class:`GenerateRequest`.

        Example::

            request = GenerateRequest.image("a red fox in snow", version=7, speed="fast")
        """
        return cls(
            "mj_img2img" if image_urls else "mj_txt2img",
            prompt,
            file_urls=image_urls,
            aspect_ratio=aspect_ratio,
            version=version,
            speed=speed,
            variety=variety,
            stylization=stylization,
            weirdness=weirdness,
            watermark=watermark,
            enable_translation=enable_translation,
            callback_url=callback_url,
            key=key,
        )

    @classmethod
    def style_reference(
        cls,
        prompt: str,
        image_urls: Sequence[str] | str,
        *,
        aspect_ratio: AspectRatio | str | None = None,
        version: Version | str | float | None = None,
        speed: Speed | str | None = None,
        variety: int | None = None,
        stylization: int | None = None,
        weirdness: int | None = None,
        watermark: str | None = None,
        enable_translation: bool | None = None,
        callback_url: str | None = None,
        key: str | None = None,
    ) -> GenerateRequest:
        """Four images in the style of the reference images (``mj_style_reference``).

        Raises:
            ValidationError: see :class:`GenerateRequest`.

        Example::

            request = GenerateRequest.style_reference("a harbour", ["https://x.example/s.png"])
        """
        return cls(
            "mj_style_reference",
            prompt,
            file_urls=image_urls,
            aspect_ratio=aspect_ratio,
            version=version,
            speed=speed,
            variety=variety,
            stylization=stylization,
            weirdness=weirdness,
            watermark=watermark,
            enable_translation=enable_translation,
            callback_url=callback_url,
            key=key,
        )

    @classmethod
    def omni_reference(
        cls,
        prompt: str,
        image_urls: Sequence[str] | str,
        *,
        ow: int | None = None,
        aspect_ratio: AspectRatio | str | None = None,
        version: Version | str | float | None = None,
        variety: int | None = None,
        stylization: int | None = None,
        weirdness: int | None = None,
        watermark: str | None = None,
        enable_translation: bool | None = None,
        callback_url: str | None = None,
        key: str | None = None,
    ) -> GenerateRequest:
        """Four images that put the subject of the reference image into the prompt's scene
        (``mj_omni_reference``); ``ow`` (1-1000) weighs the reference. No ``speed``.

        Raises:
            ValidationError: see :class:`GenerateRequest`.

        Example::

            request = GenerateRequest.omni_reference(
                "my cat as an astronaut", "https://x.example/cat.png", ow=250
            )
        """
        return cls(
            "mj_omni_reference",
            prompt,
            file_urls=image_urls,
            ow=ow,
            aspect_ratio=aspect_ratio,
            version=version,
            variety=variety,
            stylization=stylization,
            weirdness=weirdness,
            watermark=watermark,
            enable_translation=enable_translation,
            callback_url=callback_url,
            key=key,
        )

    @classmethod
    def video(
        cls,
        prompt: str,
        *,
        image_url: str,
        batch_size: int | None = None,
        motion: Motion | str = "high",
        hd: bool = False,
        aspect_ratio: AspectRatio | str | None = None,
        version: Version | str | float | None = None,
        variety: int | None = None,
        stylization: int | None = None,
        weirdness: int | None = None,
        watermark: str | None = None,
        enable_translation: bool | None = None,
        callback_url: str | None = None,
        key: str | None = None,
    ) -> GenerateRequest:
        """A video animating one image (``mj_video``, or ``mj_video_hd`` with ``hd=True``).

        Args:
            image_url: the one input image.
            batch_size: how many videos the record will hold, 1, 2 or 4 (kie's default 1).
            motion: ``"high"`` (default) or ``"low"``.

        Raises:
            ValidationError: see :class:`GenerateRequest`.

        Example::

            request = GenerateRequest.video(
                "the wave breaks", image_url="https://x.example/f.png", batch_size=2, motion="low"
            )
        """
        if not isinstance(image_url, str):
            raise invalid("image_url", f"must be one URL string, not {type(image_url).__name__}")
        return cls(
            "mj_video_hd" if hd else "mj_video",
            prompt,
            file_urls=(image_url,),
            video_batch_size=batch_size,
            motion=motion,
            aspect_ratio=aspect_ratio,
            version=version,
            variety=variety,
            stylization=stylization,
            weirdness=weirdness,
            watermark=watermark,
            enable_translation=enable_translation,
            callback_url=callback_url,
            key=key,
        )

    # -- the protocol ----------------------------------------------------------------------------

    @property
    def is_video(self) -> bool:
        """True for ``mj_video`` and ``mj_video_hd``."""
        return self.task_type in VIDEO_TYPES

    def body(self) -> dict[str, Any]:
        """The JSON body of ``POST /api/v1/mj/generate``; absent fields are left out."""
        return wire_body(self)

    def describe(self) -> str:
        """A short human description, e.g. ``"generate mj_video 'waves' (2 videos)"``."""
        extra = ""
        if self.is_video:
            count = self.video_batch_size or 1
            extra = f" ({count} video{'s' if count > 1 else ''})"
        label = f" key={self.key}" if self.key else ""
        return f"generate {self.task_type} {short(self.prompt)}{extra}{label}"

    def fingerprint(self) -> str:
        """A stable digest identifying this request: its ``key`` if given, else its content."""
        return fingerprint_of(self)
