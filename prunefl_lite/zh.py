"""Chinese twins of the English phrases that chapters compute and glue into their prose.

A chapter glues numbers (`glue("acc", 95.6)`) and, where a comparison decides the wording, English
phrases ("within noise of", "95.6 % (range 94.7-96.1)"). The Chinese edition renders from the same
execution as the English one, so a phrase glued in English must also be glued in Chinese. Chapters
import `glue` from here instead of `myst_nb`: it glues the value under its key and, when the value
is text, its Chinese twin under `KEY_zh` (text without English words is its own twin, its number
lists joined with "、"); the Chinese pages (`book/locale/zh_CN/`) cite `{glue:text}`KEY_zh``.

`chinese(text)` finds the twin in three tables, in this order:

- `PHRASES`: whole phrases, English → Chinese (the words a chapter chooses between, including
  the branches a run did not take);
- `TEMPLATES`: phrases with numbers, written with `{0}`, `{1}`, ... where the numbers go, in the
  order they appear in the English (the Chinese may reorder them), e.g. the spread over seeds
  "{0} % (range {1}-{2})" → "{0} %（范围 {1}-{2}）";
- `LISTS`: phrases holding a list joined from a varying number of items ("golomb-rice, bitmask",
  "the seed ranges of int8, half width lie below the dense one's"); each item is itself looked up
  in `PHRASES` or `TEMPLATES`, and `join_zh` joins the Chinese items.

A phrase that none of them covers raises `KeyError` naming it, so a chapter that starts gluing a
new English phrase fails the build until its Chinese is added here: no English fragment is pasted
into a Chinese sentence. Chinese values keep the English phrase's grammatical role (a comparison
"above" → "高于" stands where "above" stood), full-width punctuation, and one space between
Chinese and Latin words or numbers.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["LISTS", "NUMBER", "PHRASES", "TEMPLATES", "chinese", "glue", "join_zh",
           "needs_twin"]

# A number as chapters print them: optional sign, digits with "," or "." inside.
NUMBER = re.compile(r"(?<![\w.])[-+−]?\d+(?:[.,]\d+)*")
WORD = re.compile(r"[A-Za-z]{2,}")
# ", " between two numbers of a number-only list: Chinese lists them with "、" ("5、10、15")
NUMBER_LIST_COMMA = re.compile(r"(?<=\d), (?=[-+]?\d)")

_SAME_WORDS = "(see the note in the last cell)"  # chapter 6c's words when a timing surprised

PHRASES: dict[str, str] = {
    # comparison words (`pfl.stats.versus` and the words chapters pass to it)
    "above": "高于",
    "below": "低于",
    "within noise of": "在噪声范围内相当于",
    "within noise": "在噪声范围内",
    "beyond noise": "超出噪声范围",
    "outside the noise": "超出噪声范围",
    "clearly below": "明显低于",
    "measurably different from": "明显不同于",
    "within noise of each other": "彼此在噪声范围内",
    "within the seed noise": "在随机种子间的噪声范围内",
    "beyond the seed noise": "超出随机种子间的噪声范围",
    # names that are their own twin
    "True": "True",
    "False": "False",
    "FedAvg": "FedAvg",
    "Krum": "Krum",
    "Multi-Krum": "Multi-Krum",
    "int8": "int8",
    # 1: upload time against a local epoch
    "several times longer than": "数倍于",
    "longer than": "长于",
    "less time than": "少于",
    # 2a: the exercises' answers
    "still beyond noise with three seeds": "只用三个随机种子时，差异仍超出噪声范围",
    "with three seeds it is no longer beyond noise": "只用三个随机种子时，差异不再超出噪声范围",
    "checked": "已验证",
    "NOT kept": "并未保留",
    # 2b: the measured speed of the pruned models
    "faster than the dense one": "比稠密模型更快",
    "not measurably faster on this run": "在本次运行中没有可测出的提速",
    "about the dense speed": "与稠密模型的速度大致相同",
    "a speed that differs from dense on this run": "在本次运行中与稠密模型的速度不同",
    "smaller": "小于",
    "not smaller": "不小于",
    # 3 and 6a: the encodings `pfl.compress` chooses
    "raw": "原始",
    "bitmask": "位掩码",
    "golomb-rice": "哥伦布-莱斯",
    # 4b: partitions, server learning rate, dropout
    "in every seed": "在每个随机种子中都是如此",
    "on average": "平均而言",
    "more rounds than IID": "比 IID 更多的轮次",
    "fewer rounds than IID": "比 IID 更少的轮次",
    "within noise of IID (more rounds than IID on average)":
        "在噪声范围内相当于 IID 的轮次（平均而言比 IID 多）",
    "within noise of IID (fewer rounds than IID on average)":
        "在噪声范围内相当于 IID 的轮次（平均而言比 IID 少）",
    "above IID": "高于 IID",
    "below IID": "低于 IID",
    "within noise of IID (above IID on average)": "在噪声范围内相当于 IID（平均而言高于 IID）",
    "within noise of IID (below IID on average)": "在噪声范围内相当于 IID（平均而言低于 IID）",
    "with ranges that do not overlap": "且各范围互不重叠",
    "though neighbouring ranges overlap": "不过相邻的范围有重叠",
    "overlap": "相互重叠",
    "do not overlap": "互不重叠",
    "within noise (slower on average)": "在噪声范围内（平均而言更慢）",
    "within noise (faster on average)": "在噪声范围内（平均而言更快）",
    "slower beyond noise": "更慢，且超出噪声范围",
    "faster beyond noise": "更快，且超出噪声范围",
    # 5: the aggregation rules
    "further apart than the seed-to-seed range": "相差超出了随机种子之间的波动范围",
    # 6c: words that follow the timings
    "no real gain: it multiplies matrices of the dense model's size":
        "没有实际收益：它相乘的仍是稠密模型大小的矩阵",
    f"faster than its dense shape allows, on this run {_SAME_WORDS}":
        "在本次运行中比其稠密形状所允许的更快（见最后一个单元格中的说明）",
    f"as fast (that is, not faster), on this run {_SAME_WORDS}":
        "并没有更快（本次运行的结果，见最后一个单元格中的说明）",
    "faster, by less than the ratio of multiply-adds: at this size, per-call overheads are a "
    "large part of a forward pass":
        "更快，但快得不及乘加运算量之比：在这个规模下，每次调用的开销占前向传播的很大一部分",
    "faster by more than the ratio of multiply-adds, on this run, which fixed per-call costs "
    "should not allow (see the last note)":
        "在本次运行中快得超过了乘加运算量之比，而每次调用的固定开销本不应允许这一点（见最后的说明）",
    "a real gain": "确有实际收益",
    f"not clearly faster, on this run {_SAME_WORDS}":
        "在本次运行中没有明显更快（见最后一个单元格中的说明）",
    "its zeros are still multiplied": "它的零仍然参与乘法",
    "nearly all of it fixed per-call overhead, which is why TensorFlow at batch 1 barely "
    "separates the two widths":
        "几乎全是每次调用的固定开销，这就是 TensorFlow 在批大小为 1 时几乎区分不出两种宽度的原因",
    "and on this run the comparison with TensorFlow's per-call overhead did not come out as "
    f"expected {_SAME_WORDS}":
        "而在本次运行中，与 TensorFlow 每次调用开销的比较结果不符合预期"
        "（见最后一个单元格中的说明）",
    "no saving: it multiplies the same dense matrices, and re-applies its mask after every step":
        "没有节省：它相乘的是同样的稠密矩阵，而且每一步之后都要重新应用掩码",
    f"less than the dense model's, on this run {_SAME_WORDS}":
        "在本次运行中少于稠密模型的耗时（见最后一个单元格中的说明）",
    "faster, though by less than its parameter ratio: at batch 16 a step's fixed costs weigh as "
    "much as its arithmetic":
        "更快，但快得不及其参数量之比：在批大小为 16 时，每一步的固定开销与算术运算的分量相当",
    "the same to within": "相差不超过",
    "apart by": "相差",
    "grew: with fewer, larger steps the fixed cost of each step weighs less, and the arithmetic, "
    "which the narrow model cuts by three, weighs more":
        "增大了：步数更少、每步更大时，每一步的固定开销占比变小，而窄模型削减到三分之一的算术运算"
        "占比变大",
    "did not grow on this run: this client's examples make few steps either way, and the fixed "
    "cost of calling the update weighs on both models alike":
        "在本次运行中没有增大：无论哪种批大小，这个客户端的样本都只够走很少几步，而调用更新的"
        "固定开销对两个模型的影响相同",
    "Every timing expectation of this page held on this run.":
        "本页的每一项计时预期在本次运行中都成立。",
    # 7: intervals, speeds and the IoT variants
    "every interval contains 0: within noise": "每个区间都包含 0：在噪声范围内",
    "at the same speed as": "相当于",
    "faster than": "快于",
    "slower than": "慢于",
    "dense": "稠密",
    "80% pruned": "80% 剪枝",
    "80% pruned + int8": "80% 剪枝 + int8",
    "half width": "半宽度",
    "every variant's seed range overlaps the dense one's (within noise)":
        "每个变体的随机种子范围都与稠密模型的范围重叠（在噪声范围内）",
    # 8b: robust aggregation rules
    "median": "中位数",
    "trimmed mean": "截尾均值",
    "no rule's seed range lies entirely above FedAvg's":
        "没有哪条规则的随机种子范围完全高于 FedAvg 的范围",
    # 11: devices that differ
    "paid off on these runs": "在这几次运行中带来了收益",
    "made no difference beyond the seed noise on these runs":
        "在这几次运行中没有带来超出随机种子间噪声的差异",
    "cost accuracy on these runs": "在这几次运行中损失了准确率",
    "no better off than": "并不优于",
    "better off than": "优于",
    "worse off than": "劣于",
    "apart beyond the seed noise": "差距超出随机种子间的噪声范围",
    "about the same time: at this size an update is mostly fixed per-step costs, not arithmetic":
        "耗时大致相同：在这个规模下，一次更新主要是每一步的固定开销，而不是算术运算",
    "faster": "更快",
    "slower, on this run (a busy machine)": "在本次运行中更慢（机器繁忙）",
    "gained more, beyond the seed noise": "提升更多，超出随机种子间的噪声范围",
    "gained less, beyond the seed noise": "提升更少，超出随机种子间的噪声范围",
    "and the others moved by amounts within noise of each other":
        "与其他客户端的变化幅度彼此在噪声范围内",
    "none of them": "一个也没有",
    # FAQ: generalisation (its tfmot loading error is glued with zh=, verbatim)
    "within noise of the dense model's": "在噪声范围内相当于稠密模型的准确率",
    "above the dense model's": "高于稠密模型的准确率",
    "below the dense model's": "低于稠密模型的准确率",
    # workshop: which requirements the wheelhouse sizes were measured for
    "for the current requirements.txt": "基于当前的 requirements.txt",
    "for an earlier requirements.txt (run it again for current sizes)":
        "基于较早的 requirements.txt（重新运行可得到当前的大小）",
}

TEMPLATES: dict[str, str] = {
    # paired differences with their t interval (`pfl.stats.paired_interval`)
    "{0} % interval {1} to {2}": "{0} % 区间 {1} 至 {2}",
    "{0} points (paired {1} % interval {2} to {3})": "{0} 个百分点（配对 {1} % 区间 {2} 至 {3}）",
    "{0} points (paired {1} % interval {2} to {3}, beyond noise)":
        "{0} 个百分点（配对 {1} % 区间 {2} 至 {3}，超出噪声范围）",
    "{0} points (paired {1} % interval {2} to {3}, within noise)":
        "{0} 个百分点（配对 {1} % 区间 {2} 至 {3}，在噪声范围内）",
    "{0} points on average, within noise (paired {1} % interval {2} to {3})":
        "平均 {0} 个百分点，在噪声范围内（配对 {1} % 区间 {2} 至 {3}）",
    "{0} MB fewer, paired {1} % interval {2} to {3} MB: within noise over three seeds":
        "少 {0} MB，配对 {1} % 区间 {2} 至 {3} MB：三个随机种子下在噪声范围内",
    "{0} MB fewer, paired {1} % interval {2} to {3} MB, beyond noise":
        "少 {0} MB，配对 {1} % 区间 {2} 至 {3} MB，超出噪声范围",
    # 4b: rounds to the target when some seeds missed it in 25 rounds; a table cell
    "more than {0} in {1} of {2} seeds": "超过 {0}（{2} 个随机种子中的 {1} 个）",
    "more than {0} in {1} of {2} seeds, else {3} (range {4}-{5})":
        "超过 {0}（{2} 个随机种子中的 {1} 个），其余为 {3}（范围 {4}-{5}）",
    "{0}/{1} reached": "{1} 个随机种子中 {0} 个达到",
    # 6a: two ratios
    "{0} and {1}": "{0} 和 {1}",
    # 6c: timing expectations that failed
    "On this run {0} timing expectation(s) did not hold (a busy or different machine); the last "
    "cell lists them.":
        "本次运行中有 {0} 项计时预期未能成立（机器繁忙或不同）；最后一个单元格列出了它们。",
    # items of lists (see LISTS): 2b's mask updates, 11's widths that fit a budget
    "step {0}: {1}": "第 {0} 步：{1}",
    "width {0} ({1} kB)": "宽度 {0}（{1} kB）",
    # workshop: the wheelhouse's platforms (tools/wheelhouse.py)
    "Linux x86_64 with glibc {0} or later (Ubuntu {1}+, Debian {2}+)":
        "glibc {0} 或更高版本的 Linux x86_64（Ubuntu {1}+、Debian {2}+）",
    "macOS {0} or later on Apple silicon (arm64)":
        "搭载 Apple 芯片的 macOS {0} 或更高版本（arm64）",
    "Windows {0}/{1} on x86_64 (amd64)": "x86_64（amd64）上的 Windows {0}/{1}",
}
# the spread over seeds (`pfl.stats.spread`): "mean unit (range low-high)", or "low to high"
# when a bound is negative
for _unit, _unit_zh in (("", ""), (" %", " %"), (" MB", " MB"), (" points", " 个百分点")):
    for _sep, _sep_zh in (("-", "-"), (" to ", " 至 ")):
        TEMPLATES[f"{{0}}{_unit} (range {{1}}{_sep}{{2}})"] = (
            f"{{0}}{_unit_zh}（范围 {{1}}{_sep_zh}{{2}}）")
# a paired gap, "2.4 points above it (...)" or "2.4 points above (...)": "高 2.4 个百分点（...）"
for _it in ("", " it"):
    for _side, _word in (("above", "高"), ("below", "低")):
        for _noise, _zh in (("within noise", "在噪声范围内"), ("beyond noise", "超出噪声范围")):
            _gap = f"{{0}} points {_side}{_it} (paired {{1}} % interval {{2}} to {{3}}: {_noise})"
            TEMPLATES[_gap] = f"{_word} {{0}} 个百分点（配对 {{1}} % 区间 {{2}} 至 {{3}}：{_zh}）"

# Phrases that hold a list a chapter joins from a varying number of items (`", ".join(...)`,
# `" and ".join(...)`): the frame, with `{}` where the list stands, and its Chinese. "{}" alone is
# a bare list of at least two items ("golomb-rice, golomb-rice, bitmask"). Each item is translated
# by `chinese` (an item without English words is its own twin) and the Chinese items are joined
# by `join_zh`. Frames are tried in order; a frame whose items are not all covered is skipped.
LISTS: dict[str, str] = {
    "only at {} does the interval exclude 0": "只有在{}时区间才不包含 0",  # 7
    "the seed ranges of {} lie below the dense one's": "{}的随机种子范围低于稠密模型的范围",  # 7
    "seed ranges entirely above FedAvg's: {}": "随机种子范围完全高于 FedAvg 的规则：{}",  # 8b
    "{}": "{}",  # last: it matches any text
}
ITEM_SEPARATOR = re.compile(r", and |, | and ")
_ZH_PUNCTUATION = "，。：；、（）“”？！"


def _is_chinese(char: str) -> bool:
    """Whether `char` is a CJK ideograph or full-width Chinese punctuation."""
    return "\u4e00" <= char <= "\u9fff" or char in _ZH_PUNCTUATION


def _needs_space(left: str, right: str) -> bool:
    """Whether one space belongs between these two characters (a Chinese ideograph and Latin)."""
    def latin(char: str) -> bool:
        return not (_is_chinese(char) or char.isspace())

    return ("\u4e00" <= left <= "\u9fff" and latin(right)
            or "\u4e00" <= right <= "\u9fff" and latin(left))


def _concat(*parts: str) -> str:
    """Concatenate, with one space where a Chinese ideograph meets a Latin letter or a digit."""
    text = ""
    for part in filter(None, parts):
        text += (" " if text and _needs_space(text[-1], part[0]) else "") + part
    return text


def join_zh(items: list[str], last_and: bool = False) -> str:
    """Join Chinese list items: "、", or "；" when an item holds "：" or "，".

    Args:
        items: the Chinese items, in order.
        last_and: the English list joined its last item with "and" (then: "和").

    Returns:
        The Chinese list, spaced where Chinese meets Latin letters or digits.

    Example:
        >>> join_zh(["位掩码", "哥伦布-莱斯"])
        '位掩码、哥伦布-莱斯'
        >>> join_zh(["50 %", "70 %", "90 %"], last_and=True)
        '50 %、70 % 和 90 %'
        >>> join_zh(["第 0 步：0.0", "第 100 步：0.563"])
        '第 0 步：0.0；第 100 步：0.563'
    """
    sep = "；" if any("：" in item or "，" in item for item in items) else "、"
    if last_and and len(items) > 1:
        return _concat(sep.join(items[:-1]), "和", items[-1])
    return sep.join(items)


def _list_twin(text: str) -> str | None:
    """The twin of a phrase that holds a list (`LISTS`), or None if no frame matches."""
    for frame, frame_zh in LISTS.items():
        pattern = re.escape(frame).replace(re.escape("{}"), "(.+)", 1)
        match = re.fullmatch(pattern, text)
        if match is None:
            continue
        items = ITEM_SEPARATOR.split(match.group(1))
        if frame == "{}" and len(items) < 2:
            continue
        separators = ITEM_SEPARATOR.findall(match.group(1))
        last_and = bool(separators) and "and" in separators[-1]
        try:
            twins = [chinese(item) if needs_twin(item) else item for item in items]
        except KeyError:
            continue
        before, _, after = frame_zh.partition("{}")
        return _concat(before, join_zh(twins, last_and), after)
    return None


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
        KeyError: if neither `PHRASES`, `TEMPLATES` nor `LISTS` covers `text` (the message
            names it and this file).

    Example:
        >>> chinese("95.6 % (range 94.7-96.1)")
        '95.6 %（范围 94.7-96.1）'
        >>> chinese("within noise of")
        '在噪声范围内相当于'
        >>> chinese("the seed ranges of int8, half width lie below the dense one's")
        'int8、半宽度的随机种子范围低于稠密模型的范围'
    """
    if text in PHRASES:
        return PHRASES[text]
    template, numbers = _template_of(text)
    if template in TEMPLATES:
        return TEMPLATES[template].format(*numbers)
    listed = _list_twin(text)
    if listed is not None:
        return listed
    raise KeyError(f"no Chinese twin for the glued phrase {text!r} (template {template!r}): "
                   f"add it to PHRASES, TEMPLATES or LISTS in prunefl_lite/zh.py")


def glue(name: str, variable: Any, display: bool = True, zh: str | None = None) -> None:
    """`myst_nb.glue`, plus `NAME_zh` with the Chinese twin of every text value.

    Every `str` value gets a twin (a number-only text is its own twin, its list commas made
    "、"), so a Chinese page can
    cite `KEY_zh` for any glued text, also one that reads "12.0" on this run and "0/3 reached"
    on another.

    Args:
        name: the glue key the English prose cites.
        variable: the value; a `str` also gets a twin under `name + "_zh"`.
        display: passed to `myst_nb.glue`.
        zh: the twin, when the chapter knows it better than the tables (e.g. a library's
            error message, quoted verbatim in both editions); default `chinese(variable)`.

    Raises:
        KeyError: from `chinese` when an English phrase has no twin.

    Example:
        In a chapter, `glue("verdict", Phrase("within noise of"))` glues `verdict` and
        `verdict_zh` = "在噪声范围内相当于"; `glue("rounds", Phrase("12.0"))` glues
        `rounds_zh` = "12.0"; `glue("steps", Phrase("1, 4, 15"))` glues `steps_zh` = "1、4、15";
        `glue("acc", 95.5)` glues `acc` alone.
    """
    from myst_nb import glue as myst_glue

    myst_glue(name, variable, display=display)
    if zh is None and not isinstance(variable, str):
        return
    twin = zh if zh is not None else (chinese(variable) if needs_twin(variable)
                                      else NUMBER_LIST_COMMA.sub("、", variable))
    if isinstance(variable, str) and type(variable) is not str:
        twin = type(variable)(twin)  # a Phrase stays a Phrase (no quotes when glued)
    myst_glue(f"{name}_zh", twin, display=display)
