"""Chinese twins of glued English phrases (prunefl_lite.zh): tables, lookup, glue, chapters."""

import json
import pathlib
import re
import sys
import types

import pytest

from prunefl_lite import zh
from prunefl_lite.stats import Phrase, spread

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHINESE = re.compile(r"[\u4e00-\u9fff]")
# ASCII punctuation or a missing space where Chinese meets Latin text
ASCII_PUNCTUATION = re.compile(r"[\u4e00-\u9fff][,;:()!?]|[,;:()!?][\u4e00-\u9fff]")
NO_SPACE = re.compile(r"[\u4e00-\u9fff][A-Za-z0-9%]|[A-Za-z0-9%][\u4e00-\u9fff]")
SAMPLE_NUMBERS = ["12.3", "-4.5", "+6.7", "89", "0.25", "1,024"]

# Every alternative a chapter can glue as text, including branches its last run did not take
# (timings, overlaps, signs). Phrases with numbers are written with sample numbers.
BRANCHES = {
    "01_background": ["several times longer than", "longer than", "less time than",
                      "95.6 % (range 94.7-96.1)"],
    "02_pruning_theory": ["still beyond noise with three seeds",
                          "with three seeds it is no longer beyond noise", "checked", "NOT kept",
                          "95 % interval -0.3 to +2.0", "97.1 % (range 96.7-97.5)"],
    "02_pruning_tfmot": ["faster than the dense one", "not measurably faster on this run",
                         "about the dense speed", "a speed that differs from dense on this run",
                         "smaller", "not smaller", "step 0: 0.0",
                         "step 0: 0.0, step 100: 0.563, step 200: 0.77, step 300: 0.8"],
    "03_pruning_math": ["True", "False", "raw", "bitmask", "golomb-rice"],
    "04_fedavg_loop": ["73.4 % (range 64.4-78.9)"],
    "04_fedavg_partitions": [
        "19.0 (range 17.0-21.0)", "more than 25 in 3 of 3 seeds",
        "more than 25 in 2 of 3 seeds, else 24.0 (range 24.0-24.0)", "0/3 reached",
        "in every seed", "on average", "within noise of", "measurably different from",
        "more rounds than IID", "fewer rounds than IID",
        "within noise of IID (more rounds than IID on average)",
        "within noise of IID (fewer rounds than IID on average)", "above IID", "below IID",
        "within noise of IID (above IID on average)", "within noise of IID (below IID on average)",
        "with ranges that do not overlap", "though neighbouring ranges overlap", "overlap",
        "do not overlap", "within noise (slower on average)", "within noise (faster on average)",
        "slower beyond noise", "faster beyond noise", "within noise", "outside the noise",
        "clearly below"],
    "05_pruning_in_fl": ["above", "below", "within noise of", "within noise of each other",
                         "further apart than the seed-to-seed range", "0.88 % (range 0.83-0.92)"],
    "06_accuracy_per_byte": [
        "2.4 points above it (paired 95 % interval 1.7 to 3.2: beyond noise)",
        "1.2 points below it (paired 95 % interval -2.5 to 0.1: within noise)",
        "1.2 points above it (paired 95 % interval -0.8 to 3.3: within noise)",
        "3.0 points below it (paired 95 % interval -5.0 to -1.0: beyond noise)"],
    "06_bytes_on_the_wire": [
        "golomb-rice, golomb-rice, bitmask", "raw, bitmask, golomb-rice",
        "22.82 MB (range 17.67-28.71)", "1.20 (range 0.99-1.48)",
        "6.4 MB fewer, paired 95 % interval -2.6 to 15.5 MB: within noise over three seeds",
        "6.4 MB fewer, paired 95 % interval 2.6 to 15.5 MB, beyond noise",
        "0.4 points on average, within noise (paired 95 % interval -0.3 to 1.1)",
        "1.2 points (paired 95 % interval 0.3 to 2.1, beyond noise)",
        "5.4 points (paired 95 % interval 3.1 to 7.7)", "0.52 and 0.54"],
    "06_speed_on_litert": [
        "no real gain: it multiplies matrices of the dense model's size",
        "faster than its dense shape allows, on this run (see the note in the last cell)",
        "as fast (that is, not faster), on this run (see the note in the last cell)",
        "faster, by less than the ratio of multiply-adds: at this size, per-call overheads are a "
        "large part of a forward pass",
        "faster by more than the ratio of multiply-adds, on this run, which fixed per-call costs "
        "should not allow (see the last note)",
        "a real gain", "not clearly faster, on this run (see the note in the last cell)",
        "its zeros are still multiplied",
        "nearly all of it fixed per-call overhead, which is why TensorFlow at batch 1 barely "
        "separates the two widths",
        "and on this run the comparison with TensorFlow's per-call overhead did not come out as "
        "expected (see the note in the last cell)",
        "no saving: it multiplies the same dense matrices, and re-applies its mask after every "
        "step",
        "less than the dense model's, on this run (see the note in the last cell)",
        "faster, though by less than its parameter ratio: at batch 16 a step's fixed costs weigh "
        "as much as its arithmetic",
        "the same to within", "apart by",
        "grew: with fewer, larger steps the fixed cost of each step weighs less, and the "
        "arithmetic, which the narrow model cuts by three, weighs more",
        "did not grow on this run: this client's examples make few steps either way, and the "
        "fixed cost of calling the update weighs on both models alike",
        "Every timing expectation of this page held on this run.",
        "On this run 1 timing expectation(s) did not hold (a busy or different machine); the last "
        "cell lists them.",
        "On this run 7 timing expectation(s) did not hold (a busy or different machine); the last "
        "cell lists them."],
    "07_applications": [
        "0.50 points (paired 95 % interval -0.16 to 1.17)",
        "only at 90 % does the interval exclude 0", "only at 50 % and 90 % does the interval "
        "exclude 0", "only at 50 % and 70 % and 90 % does the interval exclude 0",
        "every interval contains 0: within noise", "beyond the seed noise",
        "within the seed noise", "at the same speed as", "faster than", "slower than",
        "the seed ranges of 80% pruned + int8 lie below the dense one's",
        "the seed ranges of 80% pruned, int8, 80% pruned + int8, half width lie below the dense "
        "one's",
        "every variant's seed range overlaps the dense one's (within noise)"],
    "08_privacy": ["above", "below", "within noise of", "57.1 % (range 53.7-60.8)"],
    "08_robustness": [
        "FedAvg", "median", "trimmed mean", "Krum", "Multi-Krum",
        "no rule's seed range lies entirely above FedAvg's",
        "seed ranges entirely above FedAvg's: Multi-Krum",
        "seed ranges entirely above FedAvg's: median, trimmed mean, Krum, Multi-Krum"],
    "10_compressed_updates": [
        "2.1 points below (paired 95 % interval -26.8 to 22.6: within noise)",
        "3.4 points above (paired 95 % interval 0.3 to 6.5: beyond noise)",
        "0.782 (range 0.651-0.897)", "-0.5 (range -1.0 to 0.2)"],
    "11_devices_that_differ": [
        "paid off on these runs", "made no difference beyond the seed noise on these runs",
        "cost accuracy on these runs", "no better off than", "better off than", "worse off than",
        "apart beyond the seed noise",
        "about the same time: at this size an update is mostly fixed per-step costs, not "
        "arithmetic", "faster", "slower, on this run (a busy machine)",
        "gained more, beyond the seed noise", "gained less, beyond the seed noise",
        "and the others moved by amounts within noise of each other",
        "-3.0 points (range -8.2 to 1.9)", "9.9 points (range 1.2-21.4)",
        "width 0.25 (8.1 kB)", "width 0.25 (8.1 kB), width 0.5 (16.0 kB)",
        "width 0.25 (8.1 kB), width 0.5 (16.0 kB), width 1 (31.9 kB)", "none of them"],
    "faq": ["within noise of the dense model's", "above the dense model's",
            "below the dense model's"],  # its load_error is glued with zh= (verbatim)
    "workshop": ["for the current requirements.txt",
                 "for an earlier requirements.txt (run it again for current sizes)",
                 "Linux x86_64 with glibc 2.35 or later (Ubuntu 22.04+, Debian 12+)",
                 "macOS 14 or later on Apple silicon (arm64)", "Windows 10/11 on x86_64 (amd64)"],
}
CASES = [(page, text) for page, texts in BRANCHES.items() for text in texts]


def numbers(text):
    return zh.NUMBER.findall(text)


def check_chinese(english, twin):
    """The conventions every twin keeps: numbers, Chinese text, punctuation and spacing."""
    assert numbers(twin) == numbers(english) or sorted(numbers(twin)) == sorted(numbers(english))
    if twin == english:  # a name or a quoted error message: its own twin
        return
    assert CHINESE.search(twin), twin
    assert not ASCII_PUNCTUATION.search(twin), twin
    assert not NO_SPACE.search(twin), twin


@pytest.mark.parametrize("english", sorted(zh.PHRASES))
def test_each_phrase_is_translated_with_its_numbers(english):
    twin = zh.chinese(english)
    assert twin == zh.PHRASES[english]
    check_chinese(english, twin)


@pytest.mark.parametrize("template", sorted(zh.TEMPLATES))
def test_each_template_is_translated_with_its_numbers(template):
    count = len(re.findall(r"\{\d+\}", template))
    sample = SAMPLE_NUMBERS[:count]
    english = template.format(*sample)
    twin = zh.chinese(english)
    assert twin == zh.TEMPLATES[template].format(*sample)
    for number in sample:
        assert number in twin
    check_chinese(english, twin)


@pytest.mark.parametrize(("page", "english"), CASES, ids=[f"{p}-{i}" for i, (p, _) in
                                                          enumerate(CASES)])
def test_every_phrase_a_chapter_can_glue_has_a_twin(page, english):
    check_chinese(english, zh.chinese(english))


@pytest.mark.parametrize("values", [[91.0, 92.5, 93.0], [-8.0, -0.1, -4.0], [0.5, 1.5, 3.0]])
@pytest.mark.parametrize("unit", ["", " %", " MB", " points"])
def test_every_spread_has_a_twin(values, unit):
    english = spread(values, unit)
    twin = zh.chinese(english)
    assert "范围" in twin and numbers(twin) == numbers(english)


@pytest.mark.parametrize(("english", "twin"), [
    ("golomb-rice, bitmask", "哥伦布-莱斯、位掩码"),
    ("only at 50 % and 90 % does the interval exclude 0", "只有在 50 % 和 90 % 时区间才不包含 0"),
    ("only at 50 % and 70 % and 90 % does the interval exclude 0",
     "只有在 50 %、70 % 和 90 % 时区间才不包含 0"),
    ("the seed ranges of half width lie below the dense one's",
     "半宽度的随机种子范围低于稠密模型的范围"),
    ("the seed ranges of int8, half width lie below the dense one's",
     "int8、半宽度的随机种子范围低于稠密模型的范围"),
    ("step 0: 0.0, step 100: 0.563", "第 0 步：0.0；第 100 步：0.563"),
])
def test_lists_translate_each_item_and_join_them(english, twin):
    assert zh.chinese(english) == twin


@pytest.mark.parametrize("english", [
    "a phrase nobody added", "bitmask, a phrase nobody added",
    "the seed ranges of quantum pruned lie below the dense one's", "12.5 widgets (range 1-2)"])
def test_an_uncovered_phrase_raises_a_key_error_naming_it_and_the_file(english):
    with pytest.raises(KeyError) as error:
        zh.chinese(english)
    message = error.value.args[0]
    assert repr(english) in message and "prunefl_lite/zh.py" in message


@pytest.mark.parametrize(("value", "expected"), [
    (95.6, False), (3, False), (True, False), (None, False), ("3.5", False),
    ("95.6 % (range 94.7-96.1)", True), ("12, 12, 4", False), ("above", True), ("", False),
    (Phrase("within noise of"), True), (["above"], False)])
def test_needs_twin(value, expected):
    assert zh.needs_twin(value) is expected


@pytest.fixture
def glued(monkeypatch):
    """What `zh.glue` passes to `myst_nb.glue`, with a stand-in `myst_nb` module."""
    calls = []
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, variable, display=True: calls.append((name, variable, display))
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    return calls


@pytest.mark.parametrize(("value", "twin"), [
    (Phrase("within noise of"), "在噪声范围内相当于"),
    ("95.6 % (range 94.7-96.1)", "95.6 %（范围 94.7-96.1）"),
    (spread([-8.0, -0.1, -4.0], " points"), "-4.0 个百分点（范围 -8.0 至 -0.1）")])
def test_glue_emits_the_twin_key(glued, value, twin):
    zh.glue("key", value, display=False)
    assert glued == [("key", value, False), ("key_zh", twin, False)]
    assert type(glued[1][1]) is type(value)  # a Phrase stays a Phrase: shown without quotes


@pytest.mark.parametrize("value", [95.6, 12, None, True])
def test_glue_emits_no_twin_for_a_value_that_is_not_text(glued, value):
    zh.glue("key", value)
    assert glued == [("key", value, True)]


@pytest.mark.parametrize("value, twin", [("3.5", "3.5"), (Phrase("12, 12, 4"), "12、12、4"),
                                         (Phrase("0.201, 0.200"), "0.201、0.200"),
                                         ("1,234", "1,234")])
def test_number_only_text_is_its_own_twin_with_chinese_list_commas(glued, value, twin):
    # a table cell that reads "12.0" on this run may read "0/3 reached" on another: the
    # Chinese page cites KEY_zh for every text value
    zh.glue("key", value)
    assert glued == [("key", value, True), ("key_zh", twin, True)]
    assert type(glued[1][1]) is type(value)


def test_a_twin_given_by_the_chapter_wins(glued):
    message = "Unknown layer: 'PruneLowMagnitude'. Whatever this TensorFlow says."
    zh.glue("load_error", message, display=False, zh=message)
    assert glued == [("load_error", message, False), ("load_error_zh", message, False)]


def test_glue_fails_on_an_uncovered_phrase(glued):
    with pytest.raises(KeyError, match="nobody added"):
        zh.glue("key", Phrase("a phrase nobody added"))


def _chapter_code(path):
    """The code of a chapter: code cells of a notebook, or `code-cell` blocks of a MyST page."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        return "\n".join("".join(c["source"]) for c in json.loads(text)["cells"]
                         if c["cell_type"] == "code")
    return "\n".join(re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", text, re.S))


CHAPTERS = sorted((ROOT / "notebooks").glob("*.ipynb")) + [ROOT / "book" / "faq.md",
                                                            ROOT / "book" / "workshop.md"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapters_glue_through_zh(path):
    code = _chapter_code(path)
    if "glue(" not in code:
        pytest.skip("glues nothing")
    assert "from prunefl_lite.zh import glue" in code
    assert "from myst_nb import glue" not in code
