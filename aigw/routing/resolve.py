"""Model resolution: what a request's `model` (and optional `provider`) names. Pure functions.

Rules, in order (as README's Configuration section tells users): a pinned `provider`; an alias
from `[models.NAME]`; `provider/model` where the first segment names a provider; the first
`[model_patterns]` glob the name matches (its alias); a bare model that exactly one provider serves.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from fnmatch import fnmatchcase

from aigw.domain import Route, Target
from aigw.errors import InvalidRequest, quoted


def resolve(
    model: str,
    pinned: str | None,
    *,
    aliases: Mapping[str, Sequence[Target]],
    providers: Collection[str],
    served_by: Mapping[str, Sequence[str]],
    patterns: Mapping[str, str] | None = None,
) -> Route | None:
    """Resolve `model`; None when nothing is known to serve it (the caller may refresh and retry).

    `served_by` maps a bare upstream model name to the providers known to serve it.
    """
    if pinned is not None:
        if pinned not in providers:
            known = ", ".join(sorted(providers)) or "none configured"
            raise InvalidRequest(f"Unknown provider {quoted(pinned)}; configured: {known}", param="provider")
        if model in aliases:
            targets = tuple(t for t in aliases[model] if t.provider == pinned)
            if not targets:
                raise InvalidRequest(
                    f"Alias {quoted(model)} has no target at provider {quoted(pinned)}", param="provider"
                )
            return Route(model, targets, alias=model)
        bare = model.removeprefix(pinned + "/")
        return Route(model, (Target(pinned, bare),))
    if model in aliases:
        return Route(model, tuple(aliases[model]), alias=model)
    head, sep, rest = model.partition("/")
    if sep and rest and head in providers:
        return Route(model, (Target(head, rest),))
    if (alias := matching_alias(model, patterns)) is not None and alias in aliases:
        return Route(model, tuple(aliases[alias]), alias=alias)
    owners = served_by.get(model, ())
    if len(owners) == 1:
        return Route(model, (Target(owners[0], model),))
    if len(owners) > 1:
        choices = ", ".join(f"'{p}/{model}'" for p in sorted(owners))
        raise InvalidRequest(
            f"Model {quoted(model)} is served by several providers; ask for one of {choices}, "
            "or set the 'provider' field",
            param="model",
        )
    return None


def matching_alias(model: str, patterns: Mapping[str, str] | None) -> str | None:
    """The alias of the first pattern `model` matches (case-sensitive globs), if any."""
    for pattern, alias in (patterns or {}).items():
        if fnmatchcase(model, pattern):
            return alias
    return None
