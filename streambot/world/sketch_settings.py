"""The `[world.sketch]` table: what the sketch world is told in config.

Apart from the world itself (no numpy, no renderer), so the settings can be
checked when the configuration is loaded (streambot.registry.WORLDS names
this model) without loading the world.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import ConfigError, explain_validation


class SketchWorldSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    render_scale: Annotated[float, Field(ge=0.05, le=1.0, strict=True)] = 0.5  # the scene is drawn this much smaller
    embedder: None = None  # only None (keywords only, for tests); left out, the shared sentence model
    background: bool = True  # map prompts in a thread of their own (False: in the render thread, for tests)


def parse_sketch_settings(table: dict[str, Any] | None, source: str = "[world.sketch]") -> SketchWorldSettings:
    """Validate the table, or stop with one sentence naming the field."""
    try:
        return SketchWorldSettings.model_validate(table or {})
    except ValidationError as e:
        raise ConfigError(explain_validation(e, source)) from None
