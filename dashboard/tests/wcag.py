"""WCAG 2.1 contrast from the project's own style sheets, without a browser.

`StyleSheets` reads the CSS the pages load (Bootstrap, then PyROS's own sheets, in that order) into
rules and computes, for an element described by its tag, classes and ancestors, the colour, background
and border colour a browser would give it: the cascade (!important, specificity, source order), custom
properties inherited from the ancestors (the `[data-bs-theme=dark]` variables on <html>), `var()` with
fallbacks, translucent colours composed over what lies beneath. It understands the selectors Bootstrap
and PyROS use for colours (compound class/attribute/tag selectors, descendant and child combinators,
`:hover`, `:focus`, `:not()`); rules behind sibling combinators, other pseudo-classes or at-rules (media
queries) are left out: none of them sets a colour the pages show at rest.

`contrast(a, b)` is the WCAG ratio from relative luminance (https://www.w3.org/TR/WCAG21/#dfn-contrast-ratio).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

Rgba = tuple[float, float, float, float]  # 0-255 channels, alpha 0-1

NAMED = {"white": (255, 255, 255, 1.0), "black": (0, 0, 0, 1.0), "transparent": (0, 0, 0, 0.0)}


def parse_colour(text: str) -> Rgba | None:
    """A CSS colour (#rgb, #rgba, #rrggbb, #rrggbbaa, rgb()/rgba() with commas or spaces, a few names)."""
    text = text.strip().lower()
    if text in NAMED:
        return NAMED[text]
    if text.startswith("#"):
        digits = text[1:]
        if len(digits) in (3, 4):
            digits = "".join(c * 2 for c in digits)
        if len(digits) not in (6, 8) or not re.fullmatch(r"[0-9a-f]+", digits):
            return None
        channels = [int(digits[i:i + 2], 16) for i in range(0, len(digits), 2)]
        alpha = channels[3] / 255 if len(channels) == 4 else 1.0
        return (channels[0], channels[1], channels[2], alpha)
    match = re.fullmatch(r"rgba?\((.*)\)", text)
    if match:
        parts = [p for p in re.split(r"[\s,/]+", match.group(1).strip()) if p]
        if len(parts) not in (3, 4):
            return None
        try:
            rgb = [float(p[:-1]) * 2.55 if p.endswith("%") else float(p) for p in parts[:3]]
            alpha = 1.0
            if len(parts) == 4:
                alpha = float(parts[3][:-1]) / 100 if parts[3].endswith("%") else float(parts[3])
        except ValueError:
            return None
        return (rgb[0], rgb[1], rgb[2], alpha)
    return None


def find_colour(value: str) -> Rgba | None:
    """The first colour in a shorthand value (`1px solid #495057`, `rgba(...) url(...)`)."""
    for match in re.finditer(r"#[0-9a-fA-F]{3,8}\b|rgba?\([^)]*\)|\b(?:white|black|transparent)\b", value):
        colour = parse_colour(match.group(0))
        if colour is not None:
            return colour
    return None


def over(top: Rgba, bottom: Rgba) -> Rgba:
    """`top` composed over an opaque `bottom` (source-over)."""
    a = top[3]
    return (top[0] * a + bottom[0] * (1 - a), top[1] * a + bottom[1] * (1 - a),
            top[2] * a + bottom[2] * (1 - a), 1.0)


def luminance(colour: Rgba) -> float:
    def linear(channel: float) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (linear(c) for c in colour[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: Rgba, b: Rgba) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def hex_of(colour: Rgba) -> str:
    return "#" + "".join(f"{round(c):02x}" for c in colour[:3])


# --- Style sheets --------------------------------------------------------------------------------
@dataclass(frozen=True)
class El:
    """An element: tag, classes, attributes, the states it is in (`hover`, `focus`)."""

    tag: str = "div"
    classes: frozenset[str] = frozenset()
    attrs: tuple[tuple[str, str], ...] = ()
    states: frozenset[str] = frozenset()

    @classmethod
    def of(cls, spec: str, states: tuple[str, ...] = (), **attrs: str) -> El:
        """`El.of("span.badge.text-bg-danger")`."""
        tag, *classes = spec.split(".")
        return cls(tag or "div", frozenset(classes), tuple(sorted(attrs.items())), frozenset(states))


@dataclass
class Rule:
    selector: str
    specificity: tuple[int, int, int]
    order: int
    declarations: list[tuple[str, str, bool]]
    compounds: list[tuple[str, list[str]]] = field(default_factory=list)


COMPOUND_TOKEN = re.compile(r"\*|[a-zA-Z][\w-]*|\.[\w-]+|#[\w-]+|\[[^\]]+\]|::?[\w-]+(?:\([^)]*\))?")
SUPPORTED_PSEUDO = {":hover", ":focus", ":root"}  # and :not(<compound>)


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside parentheses and quotes."""
    parts, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _top_level_blocks(css: str) -> list[tuple[str, str]]:
    """(prelude, body) of each top-level block; at-rules come back with their prelude starting '@'."""
    blocks, i, n = [], 0, len(css)
    while i < n:
        brace = css.find("{", i)
        if brace < 0:
            break
        prelude = css[i:brace].strip()
        if prelude.startswith("@") and ";" in prelude:  # @charset "UTF-8";@import ...; before a block
            prelude = prelude.rsplit(";", 1)[1].strip()
        depth, j = 1, brace + 1
        while j < n and depth:
            if css[j] == "{":
                depth += 1
            elif css[j] == "}":
                depth -= 1
            j += 1
        blocks.append((prelude, css[brace + 1:j - 1]))
        i = j
    return blocks


def _compounds(selector: str) -> list[tuple[str, list[str]]] | None:
    """The compounds of a selector with their combinator to the compound on their left (" " descendant,
    ">" child; the first has ""), or None when it uses anything else (+, ~, other pseudo-classes)."""
    if any(c in selector for c in "+~"):
        return None
    parts = selector.replace(">", " > ").split()
    result: list[tuple[str, list[str]]] = []
    combinator = ""
    for part in parts:
        if part == ">":
            if not result or combinator == ">":
                return None
            combinator = ">"
            continue
        tokens = COMPOUND_TOKEN.findall(part)
        if "".join(tokens) != part:
            return None
        for t in tokens:
            if t.startswith(":not(") and t.endswith(")"):
                if "".join(COMPOUND_TOKEN.findall(t[5:-1])) != t[5:-1]:
                    return None
            elif t.startswith(":") and t not in SUPPORTED_PSEUDO:
                return None
        result.append((combinator or (" " if result else ""), tokens))
        combinator = ""
    return result or None


def _specificity(compounds: list[tuple[str, list[str]]]) -> tuple[int, int, int]:
    ids = classes = tags = 0

    def count(tokens: list[str]) -> None:
        nonlocal ids, classes, tags
        for t in tokens:
            if t.startswith(":not("):
                count(COMPOUND_TOKEN.findall(t[5:-1]))
            elif t.startswith("#"):
                ids += 1
            elif t.startswith((".", "[", ":")):
                classes += 1
            elif t != "*":
                tags += 1

    for _combinator, tokens in compounds:
        count(tokens)
    return ids, classes, tags


def _matches_compound(tokens: list[str], el: El) -> bool:
    attrs = dict(el.attrs)
    for t in tokens:
        if t == "*":
            continue
        if t.startswith(":not("):
            if _matches_compound(COMPOUND_TOKEN.findall(t[5:-1]), el):
                return False
        elif t.startswith("."):
            if t[1:] not in el.classes:
                return False
        elif t.startswith("#"):
            if attrs.get("id") != t[1:]:
                return False
        elif t.startswith("["):
            name, _, value = t[1:-1].partition("=")
            present = dict(attrs, **({"class": " ".join(sorted(el.classes))} if el.classes else {}))
            if name not in present or (value and present[name] != value.strip("\"'")):
                return False
        elif t == ":root":
            if el.tag != "html":
                return False
        elif t.startswith(":"):
            if t[1:] not in el.states:
                return False
        elif t.lower() != el.tag:
            return False
    return True


def _matches(compounds: list[tuple[str, list[str]]], chain: list[El]) -> bool:
    """`chain` runs from <html> to the element itself; right to left, backtracking over ancestors."""
    def match(k: int, j: int) -> bool:  # compound k matches chain[j], and everything left of it fits
        if not _matches_compound(compounds[k][1], chain[j]):
            return False
        if k == 0:
            return True
        if compounds[k][0] == ">":
            return j > 0 and match(k - 1, j - 1)
        return any(match(k - 1, i) for i in range(j - 1, -1, -1))

    return match(len(compounds) - 1, len(chain) - 1)


INHERITED = {"color"}


class StyleSheets:
    def __init__(self, paths: list[Path]):
        self.rules: list[Rule] = []
        for path in paths:
            css = re.sub(r"/\*.*?\*/", "", path.read_text(encoding="utf-8"), flags=re.S)
            for prelude, body in _top_level_blocks(css):
                if prelude.startswith("@"):
                    continue
                declarations = []
                for item in _split_top(body, ";"):
                    name, colon, value = item.partition(":")
                    if not colon:
                        continue
                    value = value.strip()
                    important = value.lower().endswith("!important")
                    if important:
                        value = value[: -len("!important")].strip()
                    declarations.append((name.strip().lower(), value, important))
                for selector in _split_top(prelude, ","):
                    compounds = _compounds(selector)
                    if compounds:
                        self.rules.append(Rule(selector, _specificity(compounds), len(self.rules),
                                               declarations, compounds))

    # Cascade ------------------------------------------------------------------------------------
    def declared(self, chain: list[El]) -> dict[str, str]:
        """The winning declared value of each property on the last element of `chain`."""
        winners: dict[str, tuple[tuple, str]] = {}
        for rule in self.rules:
            if not _matches(rule.compounds, chain):
                continue
            for name, value, important in rule.declarations:
                key = (important, rule.specificity, rule.order)
                if name not in winners or key >= winners[name][0]:
                    winners[name] = (key, value)
        return {name: value for name, (_key, value) in winners.items()}

    def computed(self, chain: list[El]) -> list[dict[str, str]]:
        """Per element of the chain: its declared values with custom properties and `color` inherited
        and `var()` substituted."""
        result: list[dict[str, str]] = []
        inherited: dict[str, str] = {}
        for depth in range(len(chain)):
            own = self.declared(chain[: depth + 1])
            variables = {k: v for k, v in inherited.items() if k.startswith("--")}
            variables.update({k: v for k, v in own.items() if k.startswith("--")})
            values: dict[str, str] = dict(variables)
            for k, v in own.items():
                if not k.startswith("--"):
                    values[k] = v
            if "color" not in own and "color" in inherited:
                values["color"] = inherited["color"]
            resolved = {k: substitute(v, values) for k, v in values.items()}
            # invalid at computed-value time (an empty variable) means `unset`: inherit the colour
            if resolved.get("color", "").strip().lower() in ("", "inherit", "unset"):
                resolved["color"] = inherited.get("color", "")
            resolved = {k: v for k, v in resolved.items() if v.strip()}
            result.append(resolved)
            inherited = {k: v for k, v in resolved.items() if k.startswith("--") or k in INHERITED}
        return result

    # Colours ------------------------------------------------------------------------------------
    def colours(self, chain: list[El]) -> tuple[Rgba, Rgba, Rgba | None]:
        """(text colour, background beneath it, border colour) of the last element, all opaque."""
        styles = self.computed(chain)
        background: Rgba = (255, 255, 255, 1.0)  # the canvas
        for style in styles:
            own = _background(style)
            if own is not None:
                background = over(own, background)
        text = find_colour(styles[-1].get("color", "")) or (0, 0, 0, 1.0)
        if styles[-1].get("color", "").lower() == "currentcolor" and len(styles) > 1:
            text = find_colour(styles[-2].get("color", "")) or text
        border = None
        style = styles[-1]
        border_value = style.get("border-color") or style.get("border", "")
        if border_value:
            colour = find_colour(border_value)
            if colour is not None:
                below = (255, 255, 255, 1.0)
                for s in styles[:-1]:
                    b = _background(s)
                    if b is not None:
                        below = over(b, below)
                border = over(colour, below)
        return over(text, background), background, border


def _background(style: dict[str, str]) -> Rgba | None:
    value = style.get("background-color") or style.get("background")
    if not value:
        return None
    return find_colour(value)


def substitute(value: str, variables: dict[str, str], depth: int = 0) -> str:
    """`value` with every var() replaced, fallbacks (themselves holding var()) honoured; uppercase RGBA()
    lowered."""
    out, i = [], 0
    while True:
        j = value.find("var(", i)
        if j < 0:
            out.append(value[i:])
            break
        out.append(value[i:j])
        depth_, k = 1, j + 4
        while k < len(value) and depth_:
            depth_ += {"(": 1, ")": -1}.get(value[k], 0)
            k += 1
        inner = value[j + 4:k - 1]
        name, comma, fallback = inner.partition(",")
        name = name.strip()
        if variables.get(name, "initial").strip() != "initial" and depth < 20:  # `initial`: unset
            out.append(substitute(variables[name], variables, depth + 1))
        elif comma:
            out.append(substitute(fallback.strip(), variables, depth + 1))
        i = k
    return re.sub(r"\bRGBA\(", "rgba(", "".join(out))
