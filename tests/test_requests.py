"""The request kinds: every documented rule, the wire bodies, and what all kinds share.

The ``*_body.json`` files in ``tests/samples/`` were written by hand from the field tables of
kie.ai's Midjourney pages (``/work/shared/kie-api.md``), never produced by our code; each test
builds the request a user would write for it and compares the wire body.
"""

from __future__ import annotations

import doctest
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import kie_async
from kie_async import (
    ExtendRequest,
    GenerateRequest,
    TaskKind,
    UpscaleRequest,
    ValidationError,
    VaryRequest,
)
from kie_async._kinds import common as _request_core
from kie_async._kinds import extend as _extend
from kie_async._kinds import generate as _generate
from kie_async._kinds import image_actions as _image_actions
from kie_async._kinds import registry as _requests
from kie_async._kinds.common import RequestProtocol
from kie_async._kinds.registry import REQUEST_TYPES, kind_of, media_of
from kie_async._protocol import envelope as proto

SAMPLES = Path(__file__).parent / "samples"
IMAGE = "https://example.com/frame.png"


def refusal(build: Callable[[], object]) -> ValidationError | None:
    """The ValidationError ``build()`` raises, or None when it succeeds."""
    try:
        build()
    except ValidationError as exc:
        return exc
    return None


def sample_body(name: str) -> dict[str, Any]:
    """A hand-written request body from tests/samples/."""
    body: dict[str, Any] = json.loads((SAMPLES / name).read_text(encoding="utf-8"))
    return body


# -- wire bodies against the samples --------------------------------------------------------------

BODIES: dict[str, Callable[[], Any]] = {
    "generate_txt2img_body.json": lambda: GenerateRequest.image(
        "A sci-fi fighter jet in a beautiful sky, as a computer wallpaper",
        speed="relaxed",
        aspect_ratio="16:9",
        version=7,
        variety=10,
        stylization=1,
        weirdness=1,
        watermark="acme",
        enable_translation=False,
        callback_url="https://api.example.com/callback",
    ),
    "generate_img2img_body.json": lambda: GenerateRequest.image(
        "The same street at night, in the rain",
        image_urls=["https://example.com/street.jpg", "https://example.com/street-2.jpg"],
        speed="fast",
        aspect_ratio="3:2",
        version=6.1,
    ),
    "generate_style_reference_body.json": lambda: GenerateRequest.style_reference(
        "A harbour at dawn",
        ["https://example.com/style.png"],
        speed="turbo",
        version="niji6",
        stylization=1000,
        weirdness=3000,
    ),
    "generate_omni_reference_body.json": lambda: GenerateRequest.omni_reference(
        "My cat as an astronaut on the moon",
        "https://example.com/cat.png",
        ow=500,
        aspect_ratio="1:1",
        version="7",
    ),
    "generate_video_body.json": lambda: GenerateRequest.video(
        "A lighthouse in a storm, the waves rising",
        image_url="https://example.com/frame.png",
        batch_size=2,
        motion="low",
        aspect_ratio="9:16",
        callback_url="https://api.example.com/callback",
    ),
    "generate_video_hd_body.json": lambda: GenerateRequest.video(
        "Slow clouds over a mountain lake",
        image_url="https://example.com/lake.png",
        batch_size=4,
        hd=True,
        watermark="acme",
    ),
    "upscale_body.json": lambda: UpscaleRequest(
        "2584469c38e43c173dcae9e60663f645",
        0,
        watermark="watermark",
        callback_url="https://api.example.com/callback",
    ),
    "vary_body.json": lambda: VaryRequest("96a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1", 3, key="row-7"),
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_wire_body_matches_the_documented_sample(name: str) -> None:
    """Each kind's body() is exactly the hand-written sample: camelCase keys, absent fields out."""
    request = BODIES[name]()
    assert request.body() == sample_body(name)


def test_the_full_constructor_gives_the_same_body_as_the_shortcuts() -> None:
    """GenerateRequest(task_type, ...) and GenerateRequest.video(...) build the same request."""
    full = GenerateRequest(
        "mj_video",
        "A lighthouse in a storm, the waves rising",
        file_urls=["https://example.com/frame.png"],
        video_batch_size=2,
        motion="low",
        aspect_ratio="9:16",
        callback_url="https://api.example.com/callback",
    )
    assert full == BODIES["generate_video_body.json"]()


def test_video_always_sends_motion() -> None:
    """Video bodies carry motion (kie's docs call it required there), 'high' by default."""
    assert GenerateRequest("mj_video", "go", file_urls=IMAGE).body()["motion"] == "high"
    assert GenerateRequest.video("go", image_url=IMAGE).body() == {
        "taskType": "mj_video",
        "prompt": "go",
        "fileUrls": [IMAGE],
        "motion": "high",
    }
    assert "motion" not in GenerateRequest.image("go").body()


def test_a_single_url_string_is_one_image() -> None:
    """file_urls given as one string is a one-item list, not a list of its characters."""
    request = GenerateRequest("mj_img2img", "go", file_urls=IMAGE)
    assert request.file_urls == (IMAGE,)
    assert request.body()["fileUrls"] == [IMAGE]


def test_versions_may_be_numbers() -> None:
    """version=7 and version=6.1 are sent as kie's strings "7" and "6.1"."""
    assert GenerateRequest.image("go", version=7).version == "7"
    assert GenerateRequest.image("go", version=6.1).version == "6.1"
    assert GenerateRequest.image("go", version=5.2).version == "5.2"
    assert GenerateRequest.image("go", version=6.0).version == "6"


def test_extend_body_is_unchanged() -> None:
    """ExtendRequest's body keeps its 0.1.0 shape under the shared protocol."""
    assert ExtendRequest("s", 1, "p", watermark="w").body() == {
        "taskId": "s",
        "index": 1,
        "prompt": "p",
        "taskType": "mj_video_extend_manual",
        "waterMark": "w",
    }


# -- validation: each documented rule -------------------------------------------------------------

GENERATE_INVALID: list[tuple[Callable[[], Any], str, str]] = [
    (lambda: GenerateRequest("mj_blend", "go"), "task_type", "not one of"),
    (lambda: GenerateRequest("mj_txt2img", ""), "prompt", "blank"),
    (lambda: GenerateRequest("mj_txt2img", "   "), "prompt", "blank"),
    (lambda: GenerateRequest("mj_txt2img", 12), "prompt", "string"),  # type: ignore[arg-type]
    (lambda: GenerateRequest.image("x" * 2001), "prompt", "at most 2000"),
    (lambda: GenerateRequest("mj_txt2img", "go", file_urls=[IMAGE]), "file_urls", "mj_img2img"),
    (lambda: GenerateRequest("mj_img2img", "go"), "file_urls", "at least one"),
    (lambda: GenerateRequest("mj_style_reference", "go"), "file_urls", "at least one"),
    (lambda: GenerateRequest("mj_omni_reference", "go"), "file_urls", "at least one"),
    (lambda: GenerateRequest("mj_video", "go"), "file_urls", "exactly one"),
    (
        lambda: GenerateRequest("mj_video_hd", "go", file_urls=[IMAGE, IMAGE]),
        "file_urls",
        "exactly one",
    ),
    (lambda: GenerateRequest.image("go", image_urls=["ftp://x/y.png"]), "file_urls[0]", "http"),
    (lambda: GenerateRequest.image("go", image_urls=[IMAGE, "/local.png"]), "file_urls[1]", "http"),
    (lambda: GenerateRequest.image("go", image_urls=7), "file_urls", "list"),  # type: ignore[arg-type]
    (lambda: GenerateRequest.image("go", aspect_ratio="7:3"), "aspect_ratio", "not one of"),
    (lambda: GenerateRequest.image("go", version="8"), "version", "not one of"),
    (lambda: GenerateRequest.image("go", version=True), "version", "not one of"),  # type: ignore[arg-type]
    (lambda: GenerateRequest.image("go", speed="relax"), "speed", "not one of"),
    (lambda: GenerateRequest("mj_video", "go", file_urls=IMAGE, speed="fast"), "speed", "video"),
    (
        lambda: GenerateRequest("mj_omni_reference", "go", file_urls=IMAGE, speed="fast"),
        "speed",
        "mj_omni_reference",
    ),
    (lambda: GenerateRequest.image("go", variety=-5), "variety", "0..100"),
    (lambda: GenerateRequest.image("go", variety=105), "variety", "0..100"),
    (lambda: GenerateRequest.image("go", variety=7), "variety", "multiple of 5"),
    (lambda: GenerateRequest.image("go", variety=5.0), "variety", "int"),  # type: ignore[arg-type]
    (lambda: GenerateRequest.image("go", stylization=1001), "stylization", "0..1000"),
    (lambda: GenerateRequest.image("go", stylization=-1), "stylization", "0..1000"),
    (lambda: GenerateRequest.image("go", weirdness=3001), "weirdness", "0..3000"),
    (lambda: GenerateRequest.image("go", weirdness=True), "weirdness", "int"),
    (lambda: GenerateRequest("mj_txt2img", "go", ow=100), "ow", "omni"),
    (lambda: GenerateRequest.omni_reference("go", IMAGE, ow=0), "ow", "1..1000"),
    (lambda: GenerateRequest.omni_reference("go", IMAGE, ow=1001), "ow", "1..1000"),
    (lambda: GenerateRequest("mj_txt2img", "go", video_batch_size=2), "video_batch_size", "video"),
    (
        lambda: GenerateRequest.video("go", image_url=IMAGE, batch_size=3),
        "video_batch_size",
        "1, 2",
    ),
    (
        lambda: GenerateRequest.video("go", image_url=IMAGE, batch_size=True),
        "video_batch_size",
        "1, 2",
    ),
    (lambda: GenerateRequest("mj_txt2img", "go", motion="low"), "motion", "video"),
    (lambda: GenerateRequest.video("go", image_url=IMAGE, motion="fast"), "motion", "not one of"),
    (lambda: GenerateRequest.video("go", image_url=[IMAGE]), "image_url", "one URL"),  # type: ignore[arg-type]
    (lambda: GenerateRequest.image("go", watermark=" "), "watermark", "non-blank"),
    (lambda: GenerateRequest.image("go", enable_translation="yes"), "enable_translation", "True"),  # type: ignore[arg-type]
    (lambda: GenerateRequest.image("go", callback_url="hooks.example.com"), "callback_url", "http"),
    (lambda: GenerateRequest.image("go", key=""), "key", "non-empty"),
]


@pytest.mark.parametrize(("build", "field", "words"), GENERATE_INVALID)
def test_generate_refuses_each_documented_violation(
    build: Callable[[], Any], field: str, words: str
) -> None:
    """Every documented rule of /mj/generate raises a ValidationError naming the field."""
    with pytest.raises(ValidationError) as info:
        build()
    assert info.value.field == field
    assert words in info.value.reason
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize("cls", [UpscaleRequest, VaryRequest])
@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        (("", 0), {}, "task_id"),
        (("has space", 0), {}, "task_id"),
        ((123, 0), {}, "task_id"),
        (("t1", -1), {}, "index"),
        (("t1", 4), {}, "index"),
        (("t1", "1"), {}, "index"),
        (("t1", True), {}, "index"),
        (("t1", 1.0), {}, "index"),
        (("t1", 0), {"watermark": ""}, "watermark"),
        (("t1", 0), {"callback_url": "nope"}, "callback_url"),
        (("t1", 0), {"key": ""}, "key"),
    ],
)
def test_upscale_and_vary_refuse_bad_fields(
    cls: type[Any], args: tuple[Any, ...], kwargs: dict[str, Any], field: str
) -> None:
    """taskId must be a task id and imageIndex 0-3; the common fields are checked as for extend."""
    with pytest.raises(ValidationError) as info:
        cls(*args, **kwargs)
    assert info.value.field == field


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_every_image_index_is_accepted(index: int) -> None:
    """imageIndex 0 to 3 addresses the four images of a generation."""
    assert UpscaleRequest("t1", index).body()["imageIndex"] == index
    assert VaryRequest("t1", index).body()["imageIndex"] == index


@given(st.integers(min_value=-50, max_value=150))
def test_variety_is_accepted_exactly_on_its_steps(value: int) -> None:
    """variety is valid exactly when it is 0..100 and a multiple of 5."""
    valid = 0 <= value <= 100 and value % 5 == 0
    error = refusal(lambda: GenerateRequest.image("go", variety=value))
    assert (error is None) == valid
    assert error is None or error.field == "variety"


@given(
    st.sampled_from([("stylization", 0, 1000), ("weirdness", 0, 3000), ("ow", 1, 1000)]),
    st.integers(min_value=-10, max_value=3100),
)
def test_ranges_are_inclusive_and_exact(spec: tuple[str, int, int], value: int) -> None:
    """stylization, weirdness and ow accept exactly their documented inclusive ranges."""
    name, low, high = spec
    error = refusal(
        lambda: GenerateRequest("mj_omni_reference", "go", file_urls=IMAGE, **{name: value})
    )
    assert (error is None) == (low <= value <= high)
    assert error is None or error.field == name


@given(st.integers(min_value=-3, max_value=8), st.sampled_from([UpscaleRequest, VaryRequest]))
def test_image_index_range(index: int, cls: type[Any]) -> None:
    """Upscale and vary accept imageIndex exactly in 0..3."""
    error = refusal(lambda: cls("t1", index))
    assert (error is None) == (0 <= index <= 3)


@given(
    st.sampled_from(
        [
            "mj_txt2img",
            "mj_img2img",
            "mj_style_reference",
            "mj_omni_reference",
            "mj_video",
            "mj_video_hd",
        ]
    ),
    st.integers(min_value=0, max_value=3),
    st.booleans(),
)
def test_image_count_rule_per_task_type(task_type: str, images: int, with_speed: bool) -> None:
    """txt2img takes no image, img2img/style/omni at least one, video exactly one; speed is
    refused exactly for video and omni reference."""
    speed = "fast" if with_speed else None
    error = refusal(
        lambda: GenerateRequest(task_type, "go", file_urls=[IMAGE] * images, speed=speed)
    )
    if task_type == "mj_txt2img":
        images_ok = images == 0
    elif task_type.startswith("mj_video"):
        images_ok = images == 1
    else:
        images_ok = images >= 1
    speed_ok = not with_speed or task_type in ("mj_txt2img", "mj_img2img", "mj_style_reference")
    assert (error is None) == (images_ok and speed_ok)
    if error is not None:
        assert error.field == ("file_urls" if not images_ok else "speed")


# -- what every kind shares -----------------------------------------------------------------------

ONE_OF_EACH: list[Any] = [
    GenerateRequest.image("go"),
    UpscaleRequest("t1", 1),
    VaryRequest("t1", 1),
    ExtendRequest("t1", 1),
]


@pytest.mark.parametrize("request_", ONE_OF_EACH, ids=lambda r: type(r).__name__)
def test_every_kind_speaks_the_protocol(request_: Any) -> None:
    """Each kind has a kind, an endpoint, a body, a description and a fingerprint."""
    assert isinstance(request_, RequestProtocol)
    assert isinstance(request_, REQUEST_TYPES)
    assert request_.endpoint.startswith("/api/v1/mj/")
    assert isinstance(request_.body(), dict)
    assert request_.describe().startswith(request_.kind.value)
    assert request_.fingerprint().startswith("sha256:")


@pytest.mark.parametrize("request_", ONE_OF_EACH, ids=lambda r: type(r).__name__)
def test_requests_are_frozen_and_slotted(request_: Any) -> None:
    """Requests cannot be changed after validation, and carry no instance __dict__."""
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        request_.key = "changed"
    assert not hasattr(request_, "__dict__")


def test_evolve_revalidates() -> None:
    """attrs.evolve builds a new, validated request (a bad change raises)."""
    request = GenerateRequest.video("go", image_url=IMAGE)
    assert attrs.evolve(request, video_batch_size=4).video_batch_size == 4
    with pytest.raises(ValidationError):
        attrs.evolve(request, video_batch_size=3)
    assert attrs.evolve(UpscaleRequest("t1", 1), index=3).index == 3


def test_endpoints() -> None:
    """Each kind POSTs to its documented path; extend's is the one the protocol module names."""
    assert GenerateRequest.endpoint == "/api/v1/mj/generate"
    assert UpscaleRequest.endpoint == "/api/v1/mj/generateUpscale"
    assert VaryRequest.endpoint == "/api/v1/mj/generateVary"
    assert ExtendRequest.endpoint == proto.EXTEND_PATH


def test_fingerprints_tell_kinds_apart() -> None:
    """An upscale and a variation of the same image are different requests to a journal."""
    prints = {r.fingerprint() for r in (UpscaleRequest("t1", 1), VaryRequest("t1", 1))}
    assert len(prints) == 2
    assert UpscaleRequest("t1", 1).fingerprint() == UpscaleRequest("t1", 1).fingerprint()
    assert UpscaleRequest("t1", 1, key="k").fingerprint() == "key:k"


def test_fingerprint_ignores_nothing_that_changes_the_result() -> None:
    """Generation fingerprints differ when any sent field differs."""
    base = GenerateRequest.image("go")
    assert base.fingerprint() != GenerateRequest.image("go", aspect_ratio="1:1").fingerprint()
    assert base.fingerprint() == GenerateRequest.image("go").fingerprint()


def test_descriptions() -> None:
    """describe() names the kind and what it works on, briefly."""
    assert UpscaleRequest("t1", 2).describe() == "upscale t1[2]"
    assert VaryRequest("t1", 0, key="row").describe() == "vary t1[0] key=row"
    video = GenerateRequest.video("a lighthouse", image_url=IMAGE, batch_size=2)
    assert video.describe() == "generate mj_video 'a lighthouse' (2 videos)"
    long = GenerateRequest.image("x" * 100).describe()
    assert len(long) < 80


@pytest.mark.parametrize(
    ("task_type", "kind", "media"),
    [
        ("mj_txt2img", TaskKind.GENERATE, "image"),
        ("mj_img2img", TaskKind.GENERATE, "image"),
        ("mj_style_reference", TaskKind.GENERATE, "image"),
        ("mj_omni_reference", TaskKind.GENERATE, "image"),
        ("mj_video", TaskKind.GENERATE, "video"),
        ("mj_video_hd", TaskKind.GENERATE, "video"),
        ("mj_upscale", TaskKind.UPSCALE, "image"),
        ("mj_vary", TaskKind.VARY, "image"),
        ("mj_video_extend_manual", TaskKind.EXTEND, "video"),
        ("mj_video_extend_auto", TaskKind.EXTEND, "video"),
        ("mj_image_upscale_creative", TaskKind.UPSCALE, "image"),
        ("mj_variation_strong", TaskKind.VARY, "image"),
        ("mj_video_extend_hd", TaskKind.EXTEND, "video"),
        ("mj_blend", TaskKind.UNKNOWN, None),
        ("", TaskKind.UNKNOWN, None),
        (None, TaskKind.UNKNOWN, None),
    ],
)
def test_task_types_map_to_kinds(task_type: str | None, kind: TaskKind, media: str | None) -> None:
    """Documented taskTypes map to their kind and media; undocumented ones are tolerated."""
    assert kind_of(task_type) is kind
    assert media_of(task_type) == media


def test_every_generate_task_type_is_a_generate_kind() -> None:
    """The registry maps every task type a kind creates back to that kind."""
    for cls in REQUEST_TYPES:
        for task_type in cls.task_types:
            assert kind_of(task_type) is cls.kind


@pytest.mark.parametrize(
    "module",
    [_generate, _image_actions, _extend, _requests, _request_core],
    ids=lambda m: m.__name__,
)
def test_docstring_examples_hold(module: ModuleType) -> None:
    """The >>> examples in the request kinds' docstrings run and print what they claim (the
    public classes' too, which doctest.testmod skips: they say ``__module__ == "kie_async"``)."""
    finder = doctest.DocTestFinder()
    tests = finder.find(module)
    for name, obj in sorted(vars(module).items()):
        if inspect.isclass(obj) and getattr(kie_async, name, None) is obj:
            tests += finder.find(obj, name, module=False, globs=dict(vars(module)))
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    failures, tried = runner.summarize(verbose=False)
    assert failures == 0
    assert tried > 0 or module is _request_core


WIRE_KEYS = {
    "taskType",
    "prompt",
    "speed",
    "fileUrls",
    "aspectRatio",
    "version",
    "variety",
    "stylization",
    "weirdness",
    "ow",
    "waterMark",
    "enableTranslation",
    "callBackUrl",
    "videoBatchSize",
    "motion",
}


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values)


@given(
    task_type=st.sampled_from(
        ["mj_txt2img", "mj_img2img", "mj_style_reference", "mj_omni_reference", "mj_video"]
    ),
    images=st.integers(min_value=0, max_value=2),
    options=st.fixed_dictionaries(
        {},
        optional={
            "speed": _maybe(st.sampled_from(["relaxed", "fast", "turbo", "Relax"])),
            "aspect_ratio": _maybe(st.sampled_from(["16:9", "1:1", "2:1", "21:9"])),
            "version": _maybe(st.sampled_from(["7", "6.1", "niji6", "8"])),
            "variety": _maybe(st.integers(min_value=-5, max_value=105)),
            "stylization": _maybe(st.integers(min_value=-1, max_value=1001)),
            "weirdness": _maybe(st.integers(min_value=-1, max_value=3001)),
            "ow": _maybe(st.integers(min_value=0, max_value=1001)),
            "video_batch_size": _maybe(st.integers(min_value=0, max_value=5)),
            "motion": _maybe(st.sampled_from(["high", "low", "wild"])),
            "watermark": _maybe(st.sampled_from(["acme", " "])),
            "enable_translation": _maybe(st.booleans()),
        },
    ),
)
def test_what_the_sdk_accepts_kie_accepts(
    task_type: str, images: int, options: dict[str, Any]
) -> None:
    """Any generation the SDK lets through has only documented keys, no nulls, and passes the
    fake server's independent copy of kie's rules: validation is never looser than kie's."""
    from kie_async.testing import _kinds as fake_kinds

    try:
        request = GenerateRequest(task_type, "go", file_urls=[IMAGE] * images, **options)
    except ValidationError:
        return
    body = request.body()
    assert set(body) <= WIRE_KEYS
    assert None not in body.values()
    assert fake_kinds.check_generate(body) is None
