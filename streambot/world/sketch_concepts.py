"""The sketch world's scene parameters and how text maps onto them.

A scene is a vector of named floats (time of day, weather, mood, biome
weights, kinds of moving things, camera). A curated table of concepts, each a
few descriptive phrases and the parameters it sets, is embedded once; a
prompt is embedded (whole and in clauses), compared with every phrase, and
the concepts it is close to pull the scene towards their targets. Without the
sentence model the same table is matched by keywords.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from ..embeddings import SentenceEncoder

# name, default, low, high. `tod` is the time of day as a fraction of a day
# (0 midnight, .25 sunrise, .5 noon, .75 sunset) and wraps around.
PARAMS: tuple[tuple[str, float, float, float], ...] = (
    # sky, weather
    ("tod", 0.40, -1e9, 1e9),
    ("clouds", 0.35, 0.0, 1.0),
    ("fog", 0.08, 0.0, 1.0),
    ("rain", 0.0, 0.0, 1.0),
    ("snow", 0.0, 0.0, 1.0),
    ("snowcover", 0.0, 0.0, 1.0),
    ("storm", 0.0, 0.0, 1.0),
    ("wind", 0.3, 0.0, 1.0),
    # mood, colour grading
    ("exposure", 0.0, -1.0, 1.0),
    ("warmth", 0.0, -1.0, 1.0),
    ("saturation", 1.0, 0.0, 2.0),
    ("contrast", 1.0, 0.6, 1.6),
    ("tint_r", 1.0, 0.5, 1.5),
    ("tint_g", 1.0, 0.5, 1.5),
    ("tint_b", 1.0, 0.5, 1.5),
    ("grain", 0.0, 0.0, 1.0),
    ("vignette", 0.35, 0.0, 1.0),
    ("hue", 0.0, -0.5, 0.5),  # colour wheel turn, in turns
    ("trippy", 0.0, 0.0, 1.0),  # the colour wheel keeps turning
    # biomes (weights, normalised to sum to one)
    ("b_grass", 1.0, 0.0, 1.0),
    ("b_desert", 0.0, 0.0, 1.0),
    ("b_mountains", 0.0, 0.0, 1.0),
    ("b_ocean", 0.0, 0.0, 1.0),
    ("b_forest", 0.0, 0.0, 1.0),
    ("b_city", 0.0, 0.0, 1.0),
    ("b_space", 0.0, 0.0, 1.0),
    ("b_islands", 0.0, 0.0, 1.0),
    ("b_candy", 0.0, 0.0, 1.0),
    ("b_wasteland", 0.0, 0.0, 1.0),
    # things in the sky and on the ground
    ("stars", 0.4, 0.0, 1.0),
    ("moon2", 0.0, 0.0, 1.0),
    ("nebula", 0.0, 0.0, 1.0),
    ("planets", 0.0, 0.0, 1.0),
    ("aurora", 0.0, 0.0, 1.0),
    ("rainbow", 0.0, 0.0, 1.0),
    ("nova", 0.0, 0.0, 1.0),
    ("lights", 1.0, 0.0, 1.0),
    ("neon", 0.0, 0.0, 1.0),
    ("smoke", 0.0, 0.0, 1.0),
    ("searchlights", 0.0, 0.0, 1.0),
    ("magic", 0.0, 0.0, 1.0),
    # moving things
    ("birds", 0.3, 0.0, 1.0),
    ("planes", 0.0, 0.0, 1.0),
    ("cars", 0.0, 0.0, 1.0),
    ("balloons", 0.0, 0.0, 1.0),
    ("fireflies", 0.0, 0.0, 1.0),
    ("embers", 0.0, 0.0, 1.0),
    ("fireworks", 0.0, 0.0, 1.0),
    ("meteors", 0.0, 0.0, 1.0),
    ("dragons", 0.0, 0.0, 1.0),
    ("bubbles", 0.0, 0.0, 1.0),
    ("asteroids", 0.0, 0.0, 1.0),
    # camera
    ("pan", 1.0, -3.0, 4.0),
    ("zoom", 1.0, 0.8, 1.6),
    ("bob", 0.2, 0.0, 1.0),
    ("altitude", 0.0, 0.0, 1.0),
)

NAMES: tuple[str, ...] = tuple(p[0] for p in PARAMS)
IDX: dict[str, int] = {n: i for i, n in enumerate(NAMES)}
DEFAULTS = np.array([p[1] for p in PARAMS], np.float64)
LOW = np.array([p[2] for p in PARAMS], np.float64)
HIGH = np.array([p[3] for p in PARAMS], np.float64)
BIOMES: tuple[str, ...] = tuple(n for n in NAMES if n.startswith("b_"))
BIOME_IDX = np.array([IDX[b] for b in BIOMES])
TOD = IDX["tod"]
# Things that are "present or not": a negated mention ("no rain") turns them off.
_OFF = {
    n: 0.0
    for n in NAMES
    if n
    not in (
        "tod",
        "exposure",
        "warmth",
        "saturation",
        "contrast",
        "tint_r",
        "tint_g",
        "tint_b",
        "vignette",
        "pan",
        "zoom",
        "lights",
    )
    and not n.startswith("b_")
}


@dataclass(frozen=True)
class Concept:
    name: str
    phrases: tuple[str, ...]  # what it sounds like, for the sentence model
    keywords: tuple[str, ...]  # whole-word stems for the keyword fallback
    targets: dict[str, float] = field(default_factory=dict)  # param -> value; biome params are weights


def _c(name: str, phrases: str, keywords: str, **targets: float) -> Concept:
    return Concept(
        name,
        tuple(p.strip() for p in phrases.split("|")),
        tuple(k.strip() for k in keywords.split("|") if k.strip()),
        targets,
    )


# Time of day is given in hours here for readability and converted below.
CONCEPTS: tuple[Concept, ...] = (
    # -- time of day ----------------------------------------------------------
    _c(
        "night",
        "night | nighttime under the moon | a dark night sky | moonlit night",
        "night|nighttime|midnight|moonlit|moonlight|nocturnal",
        tod=0.5,
        stars=0.7,
    ),
    _c(
        "starry",
        "a clear night full of stars | starry sky | the milky way",
        "stars|starry|starlit|milky way|constellation",
        tod=23.0,
        stars=1.0,
        clouds=0.05,
    ),
    _c(
        "dawn",
        "dawn | sunrise | daybreak | first light of the morning",
        "dawn|sunrise|daybreak|sunup",
        tod=6.3,
        warmth=0.35,
        fog=0.25,
    ),
    _c("morning", "morning | early morning light | a fresh morning", "morning", tod=8.5, warmth=0.1),
    _c(
        "noon",
        "midday | noon | bright daylight | broad daylight",
        "noon|midday|daylight|daytime",
        tod=12.5,
        exposure=0.1,
    ),
    _c(
        "sunny",
        "a sunny day | clear blue sky | the sun shines brightly",
        "sunny|sunshine|sunlit|sun shines|blue sky",
        tod=12.0,
        clouds=0.12,
        rain=0.0,
        storm=0.0,
        snow=0.0,
        fog=0.03,
        exposure=0.12,
        saturation=1.15,
    ),
    _c("afternoon", "afternoon | a lazy afternoon", "afternoon", tod=15.0),
    _c(
        "golden",
        "golden hour | warm evening light | the sun low in the sky",
        "golden hour|golden light",
        tod=17.4,
        warmth=0.7,
        saturation=1.2,
    ),
    _c(
        "sunset",
        "sunset | the sun goes down | evening sky painted orange and pink",
        "sunset|sundown|evening",
        tod=17.85,
        warmth=0.8,
        clouds=0.45,
        saturation=1.25,
    ),
    _c("dusk", "dusk | twilight | the blue hour after sunset", "dusk|twilight|gloaming", tod=18.35, warmth=-0.2),
    # -- weather --------------------------------------------------------------
    _c(
        "clear",
        "clear weather | the clouds part | the sun breaks through the clouds | the storm passes",
        "clear sky|clears|cloudless|fair weather",
        clouds=0.05,
        rain=0.0,
        storm=0.0,
        snow=0.0,
        fog=0.02,
    ),
    _c(
        "cloudy",
        "cloudy sky | overcast | grey clouds gather",
        "cloud|clouds|cloudy|overcast|grey sky|gray sky",
        clouds=0.85,
    ),
    _c(
        "rain",
        "rain | a rainy day | rain falls | showers",
        "rain|rainy|raining|showers|wet",
        rain=0.6,
        clouds=0.85,
        fog=0.2,
        exposure=-0.1,
    ),
    _c(
        "heavyrain",
        "heavy rain | a downpour | torrential rain pouring down",
        "downpour|torrential|pouring|heavy rain",
        rain=1.0,
        clouds=1.0,
        fog=0.35,
        exposure=-0.2,
        wind=0.6,
    ),
    _c("drizzle", "light rain | drizzle | a gentle summer shower", "drizzle|light rain", rain=0.3, clouds=0.6),
    _c(
        "storm",
        "thunderstorm | lightning strikes | a violent storm with thunder",
        "storm|stormy|thunder|thunderstorm|lightning|tempest",
        storm=0.9,
        clouds=1.0,
        rain=0.75,
        wind=0.85,
        exposure=-0.3,
        contrast=1.15,
    ),
    _c(
        "snow",
        "snow | snowfall | snowflakes falling | a snowy winter landscape",
        "snow|snowy|snowfall|snowflakes|snowing",
        snow=0.7,
        snowcover=0.95,
        clouds=0.55,
        warmth=-0.25,
        rain=0.0,
        exposure=0.2,
    ),
    _c(
        "winter",
        "winter | cold icy frozen land | frost covers everything",
        "winter|wintry|frozen|frost|icy|ice",
        snowcover=0.95,
        snow=0.3,
        warmth=-0.35,
        saturation=0.8,
        exposure=0.15,
    ),
    _c(
        "blizzardlike",
        "a snowstorm with howling wind | a blizzard | whiteout",
        "snowstorm|whiteout|blizzard",
        snow=1.0,
        snowcover=1.0,
        wind=1.0,
        fog=0.55,
        clouds=1.0,
        warmth=-0.4,
        exposure=0.1,
    ),
    _c("fog", "fog | mist | haze | a misty morning", "fog|foggy|mist|misty|haze|hazy", fog=0.75),
    _c("wind", "strong wind | a gale blows | windy weather", "wind|windy|gale|gust|breeze", wind=0.95),
    _c(
        "calm",
        "calm and still | peaceful quiet | a gentle serene scene",
        "calm|peaceful|serene|quiet|tranquil",
        wind=0.1,
        storm=0.0,
        saturation=1.0,
        pan=0.6,
        contrast=0.95,
    ),
    # -- biomes ---------------------------------------------------------------
    _c(
        "grass",
        "green rolling hills | a grassy meadow | a wide valley with fields",
        "meadow|grass|grassy|hills|valley|countryside|pasture|farmland",
        b_grass=1.0,
    ),
    _c(
        "desert",
        "desert | sand dunes | a hot dry wasteland of sand",
        "desert|dune|dunes|sand|sahara|arid",
        b_desert=1.0,
        warmth=0.35,
        clouds=0.08,
        rain=0.0,
        snow=0.0,
        snowcover=0.0,
    ),
    _c(
        "mountains",
        "snowy mountains | high alpine peaks | a mountain range",
        "mountain|mountains|peak|peaks|alpine|alps|summit",
        b_mountains=1.0,
    ),
    _c(
        "ocean",
        "the ocean | the sea and waves | a beach by the open water",
        "ocean|sea|seas|waves|beach|coast|shore|island",
        b_ocean=1.0,
    ),
    _c(
        "lake",
        "a lake in the valley | a river winds through the land | a pond",
        "lake|lakes|river|rivers|pond|stream|water",
        b_ocean=0.4,
        b_grass=0.6,
    ),
    _c(
        "forest",
        "a forest | tall pine trees | the woods | a jungle",
        "forest|forests|trees|woods|woodland|jungle|pine",
        b_forest=1.0,
    ),
    _c(
        "city",
        "a city skyline | skyscrapers | a town with buildings and rooftops",
        "city|cities|skyline|skyscraper|skyscrapers|town|buildings|rooftops|metropolis|downtown",
        b_city=1.0,
        lights=1.0,
    ),
    _c(
        "cyberpunk",
        "neon cyberpunk megacity | neon signs glowing | a futuristic city",
        "neon|cyberpunk|futuristic|megacity|blade runner|hologram|holographic",
        b_city=1.0,
        neon=1.0,
        searchlights=0.35,
        tint_r=1.08,
        tint_g=0.9,
        tint_b=1.15,
        saturation=1.3,
        lights=1.0,
    ),
    _c(
        "space",
        "outer space | the cosmos | drifting among the stars | a spaceship voyage",
        "space|cosmos|cosmic|galaxy|spaceship|universe|orbit|interstellar",
        b_space=1.0,
        stars=1.0,
        clouds=0.0,
        rain=0.0,
        snow=0.0,
        fog=0.0,
        storm=0.0,
        birds=0.0,
    ),
    _c("nebula", "a glowing nebula | colourful gas clouds in space", "nebula|nebulae", nebula=1.0, b_space=0.8),
    _c(
        "planet",
        "a ringed planet | a gas giant | an alien planet with moons",
        "planet|planets|gas giant|saturn|jupiter",
        planets=1.0,
    ),
    _c("twinmoons", "two moons | twin moons rise", "twin moons|two moons", moon2=1.0, tod=23.0),
    _c("asteroids", "an asteroid field | tumbling rocks in space", "asteroid|asteroids", asteroids=1.0, b_space=0.7),
    _c(
        "supernova",
        "a star explodes | a supernova | a blinding flash of light",
        "supernova|explodes|explosion",
        nova=1.0,
    ),
    _c(
        "fantasy",
        "an enchanted fantasy realm | magic glowing | a fairy tale kingdom",
        "fantasy|enchanted|magic|magical|fairy|mystical|elves|wizard|realm",
        magic=1.0,
        b_islands=0.5,
        b_forest=0.5,
        saturation=1.2,
        tint_r=1.05,
        tint_b=1.1,
        fireflies=0.5,
    ),
    _c(
        "islands",
        "floating islands in the sky | rocks hovering in the air",
        "floating islands|floating island|sky islands",
        b_islands=1.0,
    ),
    _c(
        "cartoon",
        "a cartoon world | candy coloured hills | bright playful colours",
        "cartoon|candy|toon|playful|colourful|colorful|bubblegum",
        b_candy=1.0,
        saturation=1.5,
        contrast=1.1,
        exposure=0.1,
    ),
    _c(
        "war",
        "a battlefield | a war torn landscape | soldiers and artillery at the front",
        "war|battle|battlefield|artillery|front line|soldiers|ruined|ruins|bombs|1944",
        b_wasteland=1.0,
        smoke=0.8,
        saturation=0.45,
        grain=0.6,
        embers=0.3,
        warmth=-0.1,
        birds=0.0,
        contrast=1.1,
    ),
    _c(
        "fire",
        "fire and flames | a burning inferno | volcano with lava",
        "fire|fires|flames|burning|inferno|volcano|lava|hell",
        embers=1.0,
        smoke=0.6,
        warmth=1.0,
        tint_r=1.25,
        tint_g=0.9,
        tint_b=0.75,
        b_wasteland=0.7,
    ),
    _c(
        "smoke",
        "smoke rising on the horizon | smog | plumes of smoke",
        "smoke|smoky|smog|plume|plumes",
        smoke=0.9,
        fog=0.3,
    ),
    # -- sky effects ----------------------------------------------------------
    _c(
        "aurora",
        "the northern lights | an aurora ripples across the sky",
        "aurora|northern lights|borealis",
        aurora=1.0,
        tod=0.5,
        clouds=0.05,
    ),
    _c("rainbow", "a rainbow arches across the sky", "rainbow|rainbows", rainbow=1.0, clouds=0.35, tod=14.0),
    _c(
        "blackout",
        "a blackout | the lights go out | power failure darkness",
        "blackout|power cut|lights go out|power failure",
        lights=0.0,
        neon=0.0,
        exposure=-0.3,
    ),
    _c(
        "searchlights",
        "searchlights sweep the sky | spotlights | stage lights beaming",
        "searchlight|searchlights|spotlight|spotlights|floodlight",
        searchlights=1.0,
    ),
    # -- moving things --------------------------------------------------------
    _c("birds", "a flock of birds | birds flying | seagulls", "bird|birds|flock|seagull|seagulls", birds=1.0),
    _c(
        "planes",
        "aeroplanes flying overhead | a squadron of aircraft | jets",
        "plane|planes|airplane|aeroplane|aircraft|jet|jets|squadron|bomber|bombers",
        planes=1.0,
    ),
    _c(
        "cars",
        "flying cars | traffic streaming between towers | hover vehicles",
        "flying car|flying cars|traffic|hovercar|vehicles",
        cars=1.0,
    ),
    _c("balloons", "hot air balloons | balloons float up into the sky", "balloon|balloons", balloons=1.0),
    _c(
        "fireflies",
        "fireflies | glowing lights drifting | magic sparkles in the air",
        "firefly|fireflies|sparkles|glowing lights|lanterns",
        fireflies=1.0,
    ),
    _c("embers", "embers drifting | sparks fly | glowing cinders", "ember|embers|spark|sparks|cinders", embers=1.0),
    _c(
        "fireworks",
        "fireworks burst | a celebration | a festival party",
        "firework|fireworks|celebration|festival|party|new year",
        fireworks=1.0,
    ),
    _c("meteors", "shooting stars | meteors streak | comets", "meteor|meteors|comet|comets|shooting star", meteors=1.0),
    _c("dragons", "dragons circle in the sky | a flying dragon", "dragon|dragons|wyvern", dragons=1.0),
    _c("bubbles", "bubbles drift on the breeze | soap bubbles", "bubble|bubbles", bubbles=1.0),
    _c(
        "crowd",
        "a cheering crowd in an arena | a stadium | a fight begins",
        "crowd|arena|stadium|fight|fighter",
        searchlights=0.6,
        embers=0.4,
        b_city=0.6,
        contrast=1.15,
    ),
    # -- mood -----------------------------------------------------------------
    _c(
        "happy",
        "happy and cheerful | joyful | a bright fun day",
        "happy|cheerful|joyful|joy|fun",
        saturation=1.3,
        exposure=0.15,
        warmth=0.2,
    ),
    _c(
        "sad",
        "sad and melancholy | lonely | grief",
        "sad|melancholy|lonely|sorrow|grief|gloomy",
        saturation=0.55,
        exposure=-0.2,
        warmth=-0.35,
        clouds=0.7,
    ),
    _c(
        "scary",
        "scary horror | creepy and ominous | a haunted place",
        "scary|horror|creepy|ominous|haunted|spooky|eerie|sinister",
        exposure=-0.45,
        saturation=0.5,
        tint_r=0.95,
        tint_g=1.08,
        tint_b=0.95,
        fog=0.55,
        contrast=1.2,
    ),
    _c(
        "epic",
        "epic and dramatic | majestic grand vista",
        "epic|dramatic|majestic|grand",
        contrast=1.25,
        clouds=0.55,
        saturation=1.15,
    ),
    _c(
        "dreamy",
        "dreamy and soft | a pastel dream",
        "dreamy|dream|pastel|soft",
        saturation=0.85,
        fog=0.3,
        tint_r=1.08,
        tint_b=1.06,
        contrast=0.85,
        exposure=0.1,
    ),
    _c(
        "vintage",
        "an old black and white film | vintage sepia photograph | film grain",
        "vintage|sepia|black and white|old film|grainy|retro|noir",
        saturation=0.15,
        grain=1.0,
        contrast=1.15,
    ),
    _c(
        "vibrant",
        "vivid vibrant colours | saturated colours",
        "vivid|vibrant|saturated",
        saturation=1.75,
        contrast=1.15,
    ),
    _c(
        "psychedelic",
        "psychedelic trip | trippy shifting rainbow colours | an acid dream",
        "psychedelic|trippy|acid trip|kaleidoscope|lsd",
        trippy=1.0,
        saturation=1.6,
    ),
    _c(
        "alien",
        "an alien world with strange colours | another planet's landscape",
        "alien|extraterrestrial|strange world|other planet",
        hue=0.35,
        saturation=1.3,
        moon2=1.0,
    ),
    _c("darkmood", "darkness falls | pitch black darkness", "darkness|pitch black|dark|gloom", exposure=-0.6, tod=22.5),
    _c("bright", "bright and radiant light | glowing sunshine", "bright|radiant|glow|glows", exposure=0.3),
    _c("warm", "warm golden colours | a hot summer", "warm|golden|hot|summer", warmth=0.7),
    _c("cold", "cold blue colours | chilly", "cold|chilly|icy blue", warmth=-0.7),
    # Colour words tint the whole picture, so only clear requests do ("green
    # hills" is about the hills) and the tints stay moderate.
    _c(
        "red",
        "the world turns red | a blood red sky",
        "blood red|crimson sky|red sky",
        tint_r=1.25,
        tint_g=0.88,
        tint_b=0.84,
    ),
    _c(
        "green",
        "a green tint over the world | a toxic green glow",
        "toxic|green sky|green glow",
        tint_r=0.9,
        tint_g=1.12,
        tint_b=0.92,
    ),
    _c(
        "purple",
        "purple and violet hues everywhere | a magenta sky",
        "purple sky|violet sky|magenta sky|purple haze",
        tint_r=1.1,
        tint_g=0.86,
        tint_b=1.2,
    ),
    _c(
        "pink",
        "a pink sky | rose coloured light",
        "pink sky|rose coloured|rose colored",
        tint_r=1.15,
        tint_g=0.94,
        tint_b=1.06,
        warmth=0.3,
    ),
    # -- camera ---------------------------------------------------------------
    _c(
        "fast",
        "flying fast | racing forward at high speed | rushing",
        "fast|faster|speed|racing|rush|rushing|hurry",
        pan=3.5,
        wind=0.6,
    ),
    _c("slow", "slow down | drift slowly | stop moving", "slow|slowly|slower|pause|halt", pan=0.15),
    _c("reverse", "go backwards | turn around and go back", "backwards|reverse|turn around", pan=-1.2),
    _c("zoomin", "zoom in | close up | come closer", "zoom in|close up|closer", zoom=1.45),
    _c("zoomout", "zoom out | a wide panoramic shot", "zoom out|wide shot|panorama|panoramic", zoom=0.85),
    _c(
        "shake",
        "the ground shakes | an earthquake | turbulence",
        "shake|shakes|shaking|earthquake|turbulence|tremor",
        bob=1.0,
    ),
    _c(
        "soar",
        "soar high above the clouds | a bird's eye aerial view | fly up",
        "soar|soaring|aerial|above the clouds|fly up|high above",
        altitude=1.0,
    ),
    _c("ground", "back down to earth | land on the ground", "landing|ground level", altitude=0.0),
)

for _con in CONCEPTS:  # hours -> fraction of a day, once
    if "tod" in _con.targets:
        _con.targets["tod"] = _con.targets["tod"] / 24.0
    for _k in _con.targets:
        if _k not in IDX:
            raise ValueError(f"concept {_con.name!r} sets unknown parameter {_k!r}")

_NEGATION = re.compile(r"\b(no|not|stop|stops|without|end|ends|remove|less|fewer|never|clear of)\b")
# Clause boundaries: a prompt is matched whole and clause by clause, so
# "a neon city at night in the rain" finds city, night and rain separately.
_SPLIT = re.compile(
    r"[,;.!?]+|\b(?:and|with|while|as|then|but|at|in|on|over|under|above|across|through|"
    r"into|from|full of|during|beneath|below|behind|amid|among)\b",
    re.I,
)


def _negated_before(text: str, pos: int) -> bool:
    """ "no rain", "stop the snow": a negation within three words before a keyword."""
    before = _SPLIT.split(text[:pos])[-1] if text[:pos] else ""
    return bool(_NEGATION.search(" ".join(before.split()[-3:])))


def clauses(text: str) -> list[str]:
    parts = [p.strip() for p in _SPLIT.split(text) if p and len(p.strip()) > 2]
    out = [text.strip()] + [p for p in parts if p != text.strip()]
    return out[:10]


# The concept table embedded once per embedder (the process shares one).
_PHRASE_CACHE: dict[int, np.ndarray] = {}

# Per concept: activation 0..1, similarity to the text, and whether the text negates it.
Activations: TypeAlias = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]


def _may_hold(low: str, ascii_text: bool, word: str) -> bool:
    """Whether `_keyword(word)` may match a text (`low`: it lower-cased). In ASCII text
    a keyword matches only where its letters stand, in either case; the others are not
    searched, and their patterns not compiled (400 of them, 0.2 s at start)."""
    return not (ascii_text and word.isascii()) or word.lower() in low


@cache  # the concept table's keywords: a few hundred at most
def _keyword(word: str) -> re.Pattern[str]:
    """A concept keyword as a whole word, plural or not, in any case."""
    return re.compile(r"\b" + re.escape(word) + r"(?:s|es)?\b", re.I)


class SceneMapper:
    """Text -> scene parameters, through the concept table.

    `activations(text)` is the slow part (the sentence model), safe to run in a
    worker thread; `target(...)` is cheap arithmetic for the render thread.
    """

    # Cosine similarities from all-MiniLM-L6-v2: related short phrases score
    # 0.5-0.9, loosely related weather words 0.3-0.5, unrelated text < 0.3; a
    # clause's mean over all concepts is 0.2-0.4. A concept needs both an
    # absolute similarity above LOW and a lead of GAP over that mean.
    LOW = 0.38
    GAP = 0.2
    KEYWORD_SIM = 0.85
    FLOOR = 0.2
    TOP_K = 8
    MARGIN = 0.15  # how far behind a clause's best concept another may be and still count
    TEMPERATURE = 0.05  # softmax over concepts setting the same parameter: the closest wins

    def __init__(self, embedder: SentenceEncoder | None = None) -> None:
        self.embedder = embedder
        self._kw = [c.keywords for c in CONCEPTS]  # compiled when a text may hold them (`_keyword`)
        self._phrase_vecs: np.ndarray | None = None
        self._phrase_owner: NDArray[np.int_] | None = None
        if embedder is not None:
            self._phrase_owner = np.array([i for i, c in enumerate(CONCEPTS) for _ in c.phrases])
            key = id(embedder)
            if key not in _PHRASE_CACHE:
                _PHRASE_CACHE[key] = embedder.encode([p for c in CONCEPTS for p in c.phrases])
            self._phrase_vecs = _PHRASE_CACHE[key]

    # -- slow part -----------------------------------------------------------
    def activations(self, text: str) -> Activations:
        """Per concept: activation 0..1, similarity, negated flag."""
        n = len(CONCEPTS)
        parts = clauses(text)
        per = np.zeros((len(parts), n))  # similarity of each clause to each concept
        if self._phrase_vecs is not None and self.embedder is not None and self._phrase_owner is not None:
            s = self.embedder.encode(parts) @ self._phrase_vecs.T
            per[:] = -1.0
            np.maximum.at(per.T, self._phrase_owner, s.T)
        neg = np.zeros((len(parts), n), bool)
        named = np.zeros((len(parts), n), bool)
        for j, p in enumerate(parts):
            ascii_text, low = p.isascii(), p.lower()
            for i, words in enumerate(self._kw):
                for w in words:
                    if not _may_hold(low, ascii_text, w):
                        continue
                    m = _keyword(w).search(p)
                    if m:
                        # A named concept outranks its look-alikes in the same clause.
                        per[j, i] = max(per[j, i], self.KEYWORD_SIM)
                        named[j, i] = True
                        neg[j, i] = _negated_before(p, m.start())
                        break
            if not neg[j].any() and _NEGATION.search(p):
                neg[j] = True
        # A concept counts where it stands out from the clause's similarity to
        # everything (short vague clauses resemble many concepts a little) and
        # is (nearly) the clause's best match: weather words all resemble each
        # other, the closest one should win.
        if self._phrase_vecs is not None:
            gap = per - per.mean(axis=1, keepdims=True)
            a = np.clip((gap - self.GAP) / 0.15, 0.0, 1.0) * np.clip((per - self.LOW) / 0.1, 0.0, 1.0)
        else:
            a = (per > 0).astype(float)
        best = per.max(axis=1, keepdims=True)
        # ...but what the prompt names outright always counts.
        a = np.where(named, 1.0, a * np.clip(1.0 - (best - per) / self.MARGIN, 0.0, 1.0))
        best_part = a.argmax(axis=0)
        cols = np.arange(n)
        act = a[best_part, cols]
        sim = per[best_part, cols]
        negated = neg[best_part, cols]
        # Faint matches would put faint ghosts of things on screen: drop them.
        act = np.clip((act - self.FLOOR) / (1 - self.FLOOR), 0.0, 1.0)
        keep = np.argsort(-act)[: self.TOP_K]
        mask = np.zeros(n, bool)
        mask[keep] = True
        act[~mask] = 0.0
        return act, sim, negated

    # -- cheap part ------------------------------------------------------------
    def target(self, acts: Activations, rest: NDArray[np.float64]) -> NDArray[np.float64]:
        """The scene the text asks for: `rest` where it says nothing."""
        act, sim, neg = acts
        out = rest.copy()
        on = np.nonzero(act > 0)[0]
        if len(on) == 0:
            return out
        # Per parameter: the concepts that set it, softmax-weighted by similarity.
        vals: dict[int, list[tuple[float, float, float]]] = {}
        biome_votes: list[tuple[float, float, np.ndarray]] = []
        for i in on:
            c = CONCEPTS[i]
            bvec = np.zeros(len(BIOMES))
            negated = neg[i] and any(k in _OFF for k in c.targets)
            for k, v in c.targets.items():
                if k.startswith("b_"):
                    bvec[BIOMES.index(k)] = v
                    continue
                if negated:
                    if k not in _OFF:
                        continue
                    v = _OFF[k]
                vals.setdefault(IDX[k], []).append((act[i], sim[i], v))
            if bvec.sum() > 0 and not negated:
                biome_votes.append((act[i], sim[i], bvec / bvec.sum()))
        for p, lst in vals.items():
            a = np.array([x[0] for x in lst])
            s = np.array([x[1] for x in lst])
            values = np.array([x[2] for x in lst])
            w = np.exp((s - s.max()) / self.TEMPERATURE) * a
            strength = a.max()
            if p == TOD:
                ang = 2 * np.pi * values
                mean = np.arctan2((w * np.sin(ang)).sum(), (w * np.cos(ang)).sum()) / (2 * np.pi)
                cur = rest[TOD]
                # Time runs forward ("night falls") unless going back is much shorter.
                delta = (mean - cur) % 1.0
                if delta > 0.6:
                    delta -= 1.0
                out[TOD] = cur + strength * delta
            else:
                val = (w * values).sum() / w.sum()
                out[p] = rest[p] + strength * (val - rest[p])
        if biome_votes:
            a = np.array([x[0] for x in biome_votes])
            s = np.array([x[1] for x in biome_votes])
            w = np.exp((s - s.max()) / (self.TEMPERATURE * 2)) * a
            mix = sum(wi * b for wi, (_, _, b) in zip(w, biome_votes)) / w.sum()
            strength = a.max()
            out[BIOME_IDX] = rest[BIOME_IDX] * (1 - strength) + mix * strength
        return clamp(out)

    def describe(self, text: str, n: int = 6) -> list[tuple[str, float]]:
        """The strongest concepts for `text` (for logs and tuning)."""
        act, _, _ = self.activations(text)
        order = np.argsort(-act)[:n]
        return [(CONCEPTS[i].name, round(float(act[i]), 2)) for i in order if act[i] > 0]


def clamp(v: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = np.clip(v, LOW, HIGH)
    b = out[BIOME_IDX]
    total = b.sum()
    out[BIOME_IDX] = b / total if total > 1e-6 else DEFAULTS[BIOME_IDX]
    return out
