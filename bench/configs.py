"""Method configs resolved before anything is hashed: variants applied, presets expanded into their values, ``auto``
choices resolved on this machine, unknown keys refused. Cache keys and result records hold only what this returns.

Also the availability checks that methods and metrics share: a missing package or asset makes only what needs it
unavailable, with a one-line message saying how to get it.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench import assets, home, registry
from bench.contracts import BenchError, MethodSpec, Track, Unavailable, Variant

PRESET = "preset"
VARIANT_SEPARATOR = ":"


@dataclass(frozen=True)
class MethodChoice:
    """A method as the user names it: ``synctalk`` or ``synctalk:no-stabilizer``."""

    spec: MethodSpec
    variant: Variant | None = None

    @property
    def name(self) -> str:
        return self.spec.id if self.variant is None else f"{self.spec.id}{VARIANT_SEPARATOR}{self.variant.name}"


def choose_method(token: str) -> MethodChoice:
    """The spec (and variant) that ``METHOD`` or ``METHOD:VARIANT`` names."""
    method_id, separator, variant_name = token.partition(VARIANT_SEPARATOR)
    spec = registry.methods.get(method_id)
    return MethodChoice(spec, spec.variant(variant_name) if separator else None)


@dataclass(frozen=True)
class ResolvedConfig:
    """What a run of a method uses: ``values`` (hashed into cache keys), the preset they came from (a label,
    never hashed) and, for each ``auto`` choice, what it became and why."""

    values: dict[str, Any]
    preset: str | None = None
    choices: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"preset": self.preset, "choices": self.choices}


def allowed_keys(spec: MethodSpec) -> set[str]:
    keys = set(spec.default_config)
    for values in spec.presets.values():
        keys.update(values)
    if spec.presets:
        keys.add(PRESET)
    return keys


def refuse_unknown_keys(spec: MethodSpec, config: Mapping[str, Any]) -> None:
    """A BenchError naming the first key the method does not know, its closest known keys and all valid keys."""
    valid = allowed_keys(spec)
    for key in config:
        if key not in valid:
            close = difflib.get_close_matches(key, sorted(valid), n=2)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            listing = ", ".join(sorted(valid)) or "none"
            raise BenchError(f"method {spec.id!r} has no option {key!r}{hint} (its options: {listing})")


def expand_preset(spec: MethodSpec, config: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The preset's values overridden by the explicit keys; the preset's name is returned apart, never hashed."""
    values = dict(config)
    if not spec.presets:
        return values, None
    name = values.pop(PRESET, None)
    if name not in spec.presets:
        raise BenchError(f"unknown {spec.id} preset {name!r}; presets are: {', '.join(spec.presets)}")
    return {**spec.presets[name], **values}, name


def resolve(choice: MethodChoice, overrides: Mapping[str, Any]) -> ResolvedConfig:
    """Defaults, then the variant's overrides, then the user's; presets expanded and ``auto`` resolved."""
    spec = choice.spec
    variant_config = choice.variant.config if choice.variant else {}
    refuse_unknown_keys(spec, {**variant_config, **overrides})
    merged = {**spec.default_config, **variant_config, **overrides}
    values, preset = expand_preset(spec, merged)
    implementation = registry.load_object(spec.impl)
    values, choices = implementation.resolve_config(values)
    return ResolvedConfig(values, preset, choices)


def run_track(choice: MethodChoice, asked: Track) -> Track:
    """The track a run scores: the variant's when it fixes one, else the one asked for."""
    return choice.variant.track if choice.variant and choice.variant.track else asked


def missing(requires: Iterable[str], asset_names: Iterable[str]) -> str | None:
    """Why something needing these modules and assets cannot run here, importing nothing; None when it can."""
    packages = [name for name in requires if importlib.util.find_spec(name) is None]
    if packages:
        return f"needs the Python package(s) {', '.join(packages)}; install bench's dependencies"
    for name in asset_names:
        if assets.locate(name) == "missing":
            if home.offline():
                return f"asset {name!r} is missing: {assets.where_to_put(assets.get(name))}"
            return f"asset {name!r} is not here yet (`bench assets fetch {name}` downloads it)"
    return None


def require(choice: MethodChoice, prepare_options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Raise ``Unavailable`` when the method or its variant lacks a declared package, asset or preparation option."""
    variant = choice.variant
    requires = (*choice.spec.requires, *(variant.requires if variant else ()))
    asset_names = (*choice.spec.assets, *(variant.assets if variant else ()))
    if reason := missing(requires, asset_names):
        raise Unavailable(f"{choice.name}: {reason}")
    for needed in variant.prepare_options if variant else ():
        step, _, option = needed.partition(".")
        if not (prepare_options or {}).get(step, {}).get(option):
            raise Unavailable(f"{choice.name} needs the preparation option {needed}: pass --prepare {needed}=VALUE")


def unavailable(
    choice: MethodChoice, overrides: Mapping[str, Any] | None = None,
    prepare_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> str | None:
    """Why ``choice`` cannot run here with ``overrides`` (declared needs, then its resolved config), or None."""
    try:
        require(choice, prepare_options)
        resolve(choice, overrides or {})
    except Unavailable as error:
        return str(error) if str(error).startswith(choice.name) else f"{choice.name}: {error}"
    return None
