"""`expand=` of space_info and list_spaces, as the Hub has it: only the listed properties
come back (with `_id` and `id`, which huggingface_hub's SpaceInfo needs), and an unknown
one is a 400 naming the valid ones.

huggingface_hub sends the list as repeated keys (`expand=a&expand=b`); the Hub also takes
`expand[]=`. The names are huggingface_hub's ExpandSpaceProperty_T, plus `xetEnabled`,
which the 0.30-0.35 clients ask before every upload (Spaceport answers false: no Xet).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from orchestrator.api.errors import HubError

# huggingface_hub 2.4.0 hf_api.ExpandSpaceProperty_T, in its order.
SPACE_PROPERTIES = (
    "author",
    "cardData",
    "createdAt",
    "datasets",
    "disabled",
    "lastModified",
    "likes",
    "models",
    "private",
    "region",
    "resourceGroup",
    "runtime",
    "sdk",
    "sha",
    "siblings",
    "subdomain",
    "tags",
    "trendingScore",
    "usedStorage",
)
OLD_CLIENT_PROPERTIES = ("xetEnabled",)
VALID = frozenset(SPACE_PROPERTIES + OLD_CLIENT_PROPERTIES)
# Always sent, expand or not: SpaceInfo(**data) pops `id`.
ALWAYS = ("_id", "id")
MAX_VALUES = len(VALID)  # a longer list can only repeat names


def asked(request: Request) -> set[str] | None:
    """The properties `expand` asks for, or None when it is not sent (every property).
    An unknown name is the 400 the Hub answers."""
    params = request.query_params
    values = params.getlist("expand") + params.getlist("expand[]")
    if not values:
        return None
    names = [name for value in values for name in value.split(",") if name]
    unknown = sorted({name for name in names if name not in VALID})
    if unknown:
        raise HubError(
            400,
            f"Invalid expand value(s) {', '.join(map(repr, unknown[:5]))}: "
            f"expand must be one of {', '.join(SPACE_PROPERTIES)}",
        )
    return set(names)


def only(answer: dict[str, Any], properties: set[str]) -> dict[str, Any]:
    """An answer dumped with the Hub's names, cut down to `properties` (and ALWAYS)."""
    return {key: value for key, value in answer.items() if key in ALWAYS or key in properties}
