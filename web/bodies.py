"""The JSON request bodies of the API as pydantic models: the views validate with them (web.api.parsed) and
the OpenAPI document takes their schemas from them, so the two cannot disagree."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, StrictBool, StrictInt

from models_db import catalog as c
from models_db import images as im
from models_db import names
from models_db.posts import MAX_POST_IMAGES
from models_db.reviews import MAX_TEXT


def shown(what: str) -> AfterValidator:
    """For text shown to others as a name, title or label: no bidirectional controls."""
    return AfterValidator(lambda text: names.refuse_bidi_controls(text, what))


Name = Annotated[str, Field(min_length=1, max_length=255)]
DisplayName = Annotated[Name, shown("a name")]  # models, versions
Label = Annotated[str, Field(max_length=255)]
Description = Annotated[str, Field(max_length=100_000)]
Id = Annotated[StrictInt, Field(ge=1, le=2**63 - 1)]
Level = Literal[tuple(im.LEVELS)] | Literal[tuple(im.LEVELS.values())]  # a name or its bit
CommercialUse = Literal[c.COMMERCIAL_USES]


class Body(BaseModel):
    """Unknown keys are ignored (clients written for Civitai send more); strings are stripped."""
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class NewModel(Body):
    name: DisplayName
    type: Literal[c.MODEL_TYPES]
    description: Description = ""
    tags: list[Annotated[Label, shown("a tag")]] = Field(default_factory=list, max_length=100)
    nsfw: StrictBool = False
    poi: StrictBool = False
    allowNoCredit: StrictBool = True
    allowDerivatives: StrictBool = True
    allowDifferentLicense: StrictBool = True
    allowCommercialUse: list[CommercialUse] | CommercialUse = ["Image", "Rent", "Sell"]


class VersionFields(Body):
    name: DisplayName
    baseModel: Literal[c.BASE_MODELS]
    description: Description = ""
    trainedWords: list[Annotated[str, Field(max_length=1000), shown("a trigger word")]] = Field(
        default_factory=list, max_length=100)
    loginRequired: StrictBool = False


class NewVersion(VersionFields):
    modelId: Id


class NewUpload(Body):
    modelVersionId: Id
    filename: Name
    size: Annotated[StrictInt, Field(ge=1, le=2**63 - 1, description="bytes")]
    type: Literal[c.FILE_TYPES] = "Model"


class ReviewIn(Body):
    recommended: StrictBool
    rating: Annotated[StrictInt, Field(ge=1, le=5)] | None = Field(None, description="default 5 up, 1 down")
    details: Annotated[str, Field(max_length=MAX_TEXT)] = ""


class CommentIn(Body):
    content: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]


class ReportIn(Body):
    reason: Annotated[str, Field(min_length=1, max_length=1000)]


class PostIn(Body):
    title: Annotated[Label, shown("a title")] | None = ""
    modelVersionId: Id | None = None
    imageIds: list[Id] | None = Field(None, min_length=1, max_length=MAX_POST_IMAGES,
                                      description="your own images to post (generated outputs become public)")


class Decision(Body):
    action: Literal["approve", "set-level", "remove", "block"]
    level: Level | None = Field(None, description="needed for set-level")


class Vote(Body):
    level: Level


class BrowsingSetting(Body):
    browsingLevel: Literal[tuple(im.BROWSING)] | None = None
    postOutputs: StrictBool | None = Field(
        None, description="new generation outputs: posted when their run ends (true) or private until posted (false)")


class Hashes(RootModel[list[Annotated[str, Field(max_length=128)]]]):
    root: list[Annotated[str, Field(max_length=128)]] = Field(max_length=100)
