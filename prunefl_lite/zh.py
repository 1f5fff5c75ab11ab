"""Chinese twins of the English phrases that chapters compute and glue into their prose.

A chapter glues numbers (`glue("acc", 95.6)`) and, where a comparison decides the wording, English
phrases ("within noise of", "95.6 % (range 94.7-96.1)"). The Chinese edition renders from the same
execution as the English one, so a phrase glued in English must also be glued in Chinese. Chapters
import `glue` from here instead of `myst_nb`: it glues the value under its key and, when the value
is text with English words, its Chinese twin under `KEY_zh`; the Chinese pages
(`book/locale/zh_CN/`) cite `{glue:text}`KEY_zh``.

`chinese(text)` finds the twin in two tables:

- `PHRASES`: whole phrases, English → Chinese (the words a chapter chooses between);
- `TEMPLATES`: phrases with numbers, written with `{0}`, `{1}`, ... where the numbers go, in the
  order they appear in the English (the Chinese may reorder them), e.g. the spread over seeds
  "{0} % (range {1}-{2})" → "{0} %（范围 {1}-{2}）".

A phrase that is in neither table raises `KeyError` naming it, so a chapter that starts gluing a new
English phrase fails the build until its Chinese is added here: no English fragment is pasted
into a Chinese sentence.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["NUMBER", "PHRASES", "TEMPLATES", "chinese", "glue", "needs_twin"]

# A number as chapters print them: optional sign, digits with "," or "." inside.
NUMBER = re.compile(r"(?<![\w.])[-+−]?\d+(?:[.,]\d+)*")
WORD = re.compile(r"[A-Za-z]{2,}")

PHRASES: dict[str, str] = {}

TEMPLATES: dict[str, str] = {
    # the spread over seeds (`pfl.stats.spread`): mean (range min-max)
    "{0} % (range {1}-{2})": "{0} %（范围 {1}-{2}）",
    "{0} (range {1}-{2})": "{0}（范围 {1}-{2}）",
    "{0} MB (range {1}-{2})": "{0} MB（范围 {1}-{2}）",
    "{0} points (range {1} to {2})": "{0} 个百分点（范围 {1} 至 {2}）",
    # paired differences with their t interval (`pfl.stats.paired_interval`)
    "{0} % interval {1} to {2}": "{0} % 区间 {1} 至 {2}",
    "{0} points (paired {1} % interval {2} to {3})": "{0} 个百分点（配对 {1} % 区间 {2} 至 {3}）",
    "{0} points (paired {1} % interval {2} to {3}, beyond noise)":
        "{0} 个百分点（配对 {1} % 区间 {2} 至 {3}，超出噪声范围）",
    "{0} points (paired {1} % interval {2} to {3}, within noise)":
        "{0} 个百分点（配对 {1} % 区间 {2} 至 {3}，在噪声范围内）",
}
for _it in ("", " it"):  # "2.4 points above it (...)": the Chinese twin reads "高 2.4 个百分点（...）"
    for _side, _word in (("above", "高"), ("below", "低")):
        for _noise, _zh in (("within noise", "在噪声范围内"), ("beyond noise", "超出噪声范围")):
            TEMPLATES[f"{{0}} points {_side}{_it} (paired {{1}} % interval {{2}} to {{3}}: {_noise})"] = (
                f"{_word} {{0}} 个百分点（配对 {{1}} % 区间 {{2}} 至 {{3}}：{_zh}）")


def needs_twin(value: Any) -> bool:
    """Whether a glued value is text with English words (and so needs a Chinese twin).

    Example:
        >>> needs_twin("within noise of"), needs_twin("3.5"), needs_twin(0.8)
        (True, False, False)
    """
    return isinstance(value, str) and bool(WORD.search(value))


def _template_of(text: str) -> tuple[str, list[str]]:
    """`text` with each number replaced by `{i}`, and the numbers in order."""
    numbers: list[str] = []

    def mark(match: re.Match) -> str:
        numbers.append(match.group(0))
        return "{" + str(len(numbers) - 1) + "}"

    return NUMBER.sub(mark, text), numbers


def chinese(text: str) -> str:
    """The Chinese twin of an English phrase a chapter glues.

    Args:
        text: the English phrase as glued (numbers already formatted).

    Returns:
        The Chinese phrase, with the same numbers.

    Raises:
        KeyError: if neither `PHRASES` nor `TEMPLATES` covers `text` (the message names it).

    Example:
        >>> chinese("95.6 % (range 94.7-96.1)")
        '95.6 %（范围 94.7-96.1）'
        >>> chinese("within noise of")
        '在噪声范围内相当于'
    """
    if text in PHRASES:
        return PHRASES[text]
    template, numbers = _template_of(text)
    if template in TEMPLATES:
        return TEMPLATES[template].format(*numbers)
    raise KeyError(f"no Chinese twin for the glued phrase {text!r} (template {template!r}): "
                   f"add it to PHRASES or TEMPLATES in prunefl_lite/zh.py")


def glue(name: str, variable: Any, display: bool = True) -> None:
    """`myst_nb.glue`, plus `NAME_zh` with the Chinese twin when the value is English text.

    Args:
        name: the glue key the English prose cites.
        variable: the value; a `str` with English words also gets a twin under `name + "_zh"`.
        display: passed to `myst_nb.glue`.

    Raises:
        KeyError: from `chinese` when an English phrase has no twin.
    """
    from myst_nb import glue as myst_glue

    myst_glue(name, variable, display=display)
    if needs_twin(variable):
        twin = chinese(str(variable))
        myst_glue(f"{name}_zh", type(variable)(twin) if type(variable) is not str else twin,
                  display=display)
