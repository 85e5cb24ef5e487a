"""Strict shapes of every JSON request body the API takes.

Each field has one type and gets nothing else: `{"private": "true"}` is a 422 that says
`private` must be a boolean, never a 200 that quietly leaves the Space public. Fields the
Hub clients send that Spaceport has no use for (`resourceGroupId`, `region`, ...) are
ignored, as before. Text must be valid Unicode without NUL characters (PostgreSQL can't
store those), and numbers fit their database columns, so bad input is a 4xx, not a 500.

A route validates its body with :func:`check` first and goes on only when it passes, so
nothing is half-written by a request that is refused.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from orchestrator.api.errors import HubError

# The largest value an INTEGER column holds on PostgreSQL (and so on every stack).
MAX_INT = 2**31 - 1


def _clean(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


Text = Annotated[str, AfterValidator(_clean)]
Seconds = Annotated[int, Field(ge=-1, le=MAX_INT)]
Visibility = Literal["public", "private", "protected"]


class StrictBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


# The secret and variable tables' column sizes.
KeyName = Annotated[Text, Field(min_length=1, max_length=128)]
Description = Annotated[Text, Field(max_length=500)]


class KeyValue(StrictBody):
    key: KeyName
    value: Text
    description: Description | None = None


class VolumeBody(StrictBody):
    """One huggingface_hub Volume; orchestrator/volumes/spec.py checks what it means."""

    type: Text
    source: Annotated[Text, Field(max_length=256)]
    mountPath: Annotated[Text, Field(max_length=256)]  # noqa: N815 - the Hub's name
    revision: Annotated[Text, Field(max_length=256)] | None = None
    readOnly: bool | None = None  # noqa: N815
    path: Annotated[Text, Field(max_length=256)] | None = None


# More than any installation allows (SPACEPORT_MAX_VOLUMES_PER_SPACE says the exact limit).
VolumeList = Annotated[list[VolumeBody], Field(max_length=64)]


class Volumes(StrictBody):
    volumes: VolumeList


class CreateBucket(StrictBody):
    visibility: Visibility | None = None
    private: bool | None = None


class CreateRepo(StrictBody):
    name: Text
    organization: Text | None = None
    type: Text = "model"
    sdk: Text | None = None
    private: bool | None = None
    visibility: Visibility | None = None
    hardware: Text | None = None
    sleepTimeSeconds: Seconds | None = None  # noqa: N815 - the Hub's name
    secrets: list[KeyValue] | None = None
    variables: list[KeyValue] | None = None
    template: Annotated[Text, Field(max_length=200)] | None = None  # a template's repo id
    volumes: VolumeList | None = None


class DeleteRepo(StrictBody):
    name: Text
    organization: Text | None = None
    type: Text | None = None


class MoveRepo(StrictBody):
    fromRepo: Text  # noqa: N815
    toRepo: Text  # noqa: N815
    type: Text | None = None


class Duplicate(StrictBody):
    repository: Text | None = None
    private: bool | None = None
    visibility: Visibility | None = None
    hardware: Text | None = None
    sleepTimeSeconds: Seconds | None = None  # noqa: N815
    secrets: list[KeyValue] | None = None
    variables: list[KeyValue] | None = None
    volumes: VolumeList | None = None


class RepoSettings(StrictBody):
    private: bool | None = None
    visibility: Visibility | None = None
    gated: Text | bool | None = None
    # Spaceport's own: visitors let in at once (null: the tier's); bounds checked by
    # spaces/visitor_limit.py, which knows the installation's maximum.
    visitorConcurrency: Annotated[int, Field(ge=1, le=MAX_INT)] | None = None  # noqa: N815


class Hardware(StrictBody):
    flavor: Text
    sleepTimeSeconds: Seconds | None = None  # noqa: N815


class SleepTime(StrictBody):
    seconds: Seconds


class Key(StrictBody):
    key: KeyName


class LfsObject(StrictBody):
    oid: Text
    size: Annotated[int, Field(ge=0, le=2**63 - 1)]


class LfsBatch(StrictBody):
    operation: Literal["upload", "download"]
    objects: list[LfsObject]
    transfers: list[Text] | None = None


class ValidateYaml(StrictBody):
    content: Text | None = None
    repoType: Text | None = None  # noqa: N815


# A tag's or a squashed commit's message: a commit message, not a file.
RefMessage = Annotated[Text, Field(max_length=64 << 10)]


class CreateBranch(StrictBody):
    startingPoint: Text | None = None  # noqa: N815 - the Hub's name


class CreateTag(StrictBody):
    tag: Text
    message: RefMessage | None = None


class SuperSquash(StrictBody):
    message: RefMessage | None = None


class PreuploadFile(StrictBody):
    path: Text
    size: Annotated[int, Field(ge=0, le=2**63 - 1)]
    sample: Text | None = None


class Preupload(StrictBody):
    files: list[PreuploadFile]
    # The .gitignore the client commits with the files (huggingface_hub reads it from the
    # commit); no real one comes near this.
    gitIgnore: Annotated[Text, Field(max_length=256 << 10)] | None = None  # noqa: N815


Model = TypeVar("Model", bound=StrictBody)


def describe(error: ValidationError) -> str:
    """One line a client can act on: every field that is wrong and what it must be. The
    input itself is not repeated (it may be a secret's value)."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in item["loc"]) or "body"
        problems.append(f"{where}: {item['msg']}")
    return "invalid request body: " + "; ".join(problems)


def check(model: type[Model], body: object) -> Model:
    """The body as `model`, or a 422 naming every field that is wrong."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise HubError(422, describe(exc)) from exc


class CreditGrant(StrictBody):
    """POST /api/billing/grants: `amount` in USD, a number or a decimal string
    (orchestrator/billing/accounts.parse_usd checks its bounds)."""

    account: Annotated[Text, Field(min_length=1, max_length=96)]
    amount: Annotated[Text, Field(max_length=32)] | float
    note: Description | None = None
