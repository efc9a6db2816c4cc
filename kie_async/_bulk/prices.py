"""Credits per create: the price table that a budgeted run and a dry run read (pure).

A price is what one create costs, in credits. It is looked up by keys, most specific first:
``"<taskType>:<batch>"`` (a video generation of that batch size, e.g. ``"mj_video_hd:2"``),
the ``taskType`` (``"mj_video_extend_manual"``, ``"mj_txt2img"``...), then the kind
(``"extend"``, ``"generate"``, ``"upscale"``, ``"vary"``). The user's prices are looked up
before the defaults, so ``{"extend": 70}`` beats a default for ``mj_video_extend_auto``.

The defaults (:data:`DEFAULT_PRICES`) are only the figures some source has put in writing,
each with its source in :data:`PRICE_SOURCES`; a kind no source prices has none, and a
budgeted run refuses to start without one rather than guess, unless the user marks it
``"learn"`` (or ``"learn:CEILING"``): then the run learns it from the balance before and after
one create (``learning``), and keeps it in :attr:`PriceTable.learned`.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import attrs

from .._errors import ConfigurationError
from .._kinds.extend import ExtendMode, ExtendRequest
from .._kinds.generate import GenerateRequest
from .._kinds.generate_rules import GENERATE_TYPES, VIDEO_TYPES
from .._kinds.registry import TaskRequest

__all__ = [
    "DEFAULT_PRICES",
    "PRICE_SOURCES",
    "Learn",
    "PriceTable",
    "json_price_keys",
    "price_keys",
]

_C04 = (
    "a third-party price list (an agent-skill document quoting kie.ai's pricing page, 2026), "
    "unverified; kie.ai may change its prices at any time"
)

#: Credits per create where a source has given a figure (see :data:`PRICE_SOURCES`). kie.ai
#: publishes its prices on its pricing page only, and may change them: check them, and pass your
#: own (``prices=``, ``--price``) when they differ.
DEFAULT_PRICES: Mapping[str, Decimal] = MappingProxyType(
    {
        "mj_video_extend_auto": Decimal(60),
        "mj_video_extend_manual": Decimal(60),
        "mj_video:1": Decimal(15),
        "mj_video:2": Decimal(30),
        "mj_video_hd:1": Decimal(45),
        "mj_video_hd:2": Decimal(90),
        "mj_video_hd:4": Decimal(180),
    }
)
#: Where each default of :data:`DEFAULT_PRICES` comes from.
PRICE_SOURCES: Mapping[str, str] = MappingProxyType(dict.fromkeys(DEFAULT_PRICES, _C04))

_KINDS = ("extend", "generate", "upscale", "vary")
_TASK_TYPES = frozenset({*GENERATE_TYPES, *(mode.value for mode in ExtendMode)})
_BATCHES = (1, 2, 4)


def _keys(kind: str, task_type: str | None, batch: int | None) -> tuple[str, ...]:
    keys = [kind]
    if task_type:
        keys.insert(0, task_type)
        if batch is not None and task_type in VIDEO_TYPES:
            keys.insert(0, f"{task_type}:{batch}")
    return tuple(keys)


def price_keys(request: TaskRequest) -> tuple[str, ...]:
    """The keys ``request``'s price is looked up by, most specific first."""
    if isinstance(request, ExtendRequest):
        return _keys("extend", request.mode.value, None)
    if isinstance(request, GenerateRequest):
        batch = (request.video_batch_size or 1) if request.is_video else None
        return _keys("generate", request.task_type, batch)
    return _keys(request.kind.value, None, None)


def json_price_keys(data: Mapping[str, Any]) -> tuple[str, ...]:
    """The price keys of a request as a journal's ``intent`` line keeps it (an extension
    without ``kind``, as in 0.1.0; any other kind with its jobs-file fields)."""
    kind = data.get("kind") or "extend"
    if kind == "extend":
        mode = ExtendMode.MANUAL if data.get("mode") == "manual" else ExtendMode.AUTO
        return _keys("extend", mode.value, None)
    task_type = data.get("task_type") if kind == "generate" else None
    if not isinstance(task_type, str):
        return (str(kind),)
    batch = data.get("video_batch_size") or 1
    return _keys("generate", task_type, batch if isinstance(batch, int) else None)


@attrs.frozen
class Learn:
    """A price to learn at run time (``"learn"``, or ``"learn:CEILING"``): from the balance
    before and after one create, which may cost at most ``ceiling`` (``None``: at most the
    balance, as kie.ai refuses a create the balance cannot pay)."""

    ceiling: Decimal | None = None


LEARN = "learn"


def _credits(key: str, value: object) -> Decimal | Learn:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ConfigurationError("prices", f"{key}: must be a number, got {value!r}")
    text = str(value).strip()
    learn, colon, ceiling = text.partition(":")
    if learn.strip().lower() == LEARN and isinstance(value, str):
        if not colon:
            return Learn()
        bound = _credits(key, ceiling)
        if not isinstance(bound, Decimal) or bound <= 0:
            raise ConfigurationError(
                "prices", f"{key}: learn:CEILING needs a number > 0, got {value!r}"
            )
        return Learn(bound)
    try:
        credits = Decimal(text)
    except decimal.InvalidOperation:
        raise ConfigurationError(
            "prices", f"{key}: {value!r} is not a number, 'learn' or 'learn:CEILING'"
        ) from None
    if not credits.is_finite() or credits < 0:
        raise ConfigurationError("prices", f"{key}: must be a number >= 0, got {value!r}")
    return credits


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise ConfigurationError("prices", f"a key must be a string, got {key!r}")
    task_type, colon, batch = key.partition(":")
    if colon:
        if task_type in VIDEO_TYPES and batch in {str(size) for size in _BATCHES}:
            return key
        raise ConfigurationError(
            "prices",
            f"{key!r}: a batch price is mj_video or mj_video_hd, ':' and 1, 2 or 4",
        )
    if key in _KINDS or key in _TASK_TYPES:
        return key
    raise ConfigurationError(
        "prices",
        f"unknown key {key!r}: use a kind ({', '.join(_KINDS)}), a taskType "
        "(e.g. mj_video_hd) or a video taskType and batch size (e.g. mj_video:2)",
    )


class PriceTable:
    """The prices of a run: the user's (checked), then the defaults; a price marked ``"learn"``
    is looked up in :attr:`learned` once the run has learned it.

    Raises:
        ConfigurationError: a key that names no kind, taskType or batch, or a price that is
            not a number >= 0, ``"learn"`` or ``"learn:CEILING"``.
    """

    __slots__ = ("defaults", "given", "learned")

    def __init__(self, prices: Mapping[str, object] | None = None, *, defaults: bool = True):
        if prices is not None and not isinstance(prices, Mapping):
            raise ConfigurationError(
                "prices", f"must be a mapping of keys to credits, got {type(prices).__name__}"
            )
        self.given = {
            _check_key(key): _credits(key, value) for key, value in (prices or {}).items()
        }
        self.defaults: Mapping[str, Decimal | Learn] = DEFAULT_PRICES if defaults else {}
        #: Prices learned by this run, by the most specific key of the create they came from.
        self.learned: dict[str, Decimal] = {}

    def find(self, keys: tuple[str, ...]) -> tuple[Decimal | Learn, str, str] | None:
        """The rule of the first of ``keys`` that has one, its key and its source (``"given"``
        or ``"default"``; ``"learned"`` for a learned price, under ``keys[0]``)."""
        for table, source in ((self.given, "given"), (self.defaults, "default")):
            for key in keys:
                if key in table:
                    value = table[key]
                    if isinstance(value, Learn) and keys[0] in self.learned:
                        return self.learned[keys[0]], keys[0], "learned"
                    return value, key, source
        return None

    def price(self, keys: tuple[str, ...]) -> Decimal:
        """The price of the first of ``keys`` that has one.

        Raises:
            ConfigurationError: no price is known for any of ``keys``, or it is still to be
                learned.
        """
        found = self.find(keys)
        if found is None:
            raise missing_price(keys)
        if isinstance(found[0], Learn):
            raise ConfigurationError(
                "prices",
                f"the journal records paid creates of {keys[0]}, whose price this run would "
                f"learn ({found[1]}=learn): pass the price an earlier run learned (its summary "
                f"names it), e.g. --price {keys[0]}=N; nothing was sent",
            )
        return found[0]


def missing_price(keys: tuple[str, ...]) -> ConfigurationError:
    """The error of a budgeted run that meets a create it has no price for."""
    tried = ", ".join(keys)
    return ConfigurationError(
        "prices",
        f"no price is known for {keys[0]} (looked up: {tried}); a budgeted run needs the price "
        f"of every create: pass prices={{{keys[0]!r}: N}} (command line: --price "
        f"{keys[0]}=N), or 'learn:CEILING' to learn it from the balance; nothing was sent",
    )
