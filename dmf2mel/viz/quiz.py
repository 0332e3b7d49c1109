"""Quick checks: a few auto-checked concept questions at the end of a chapter.

A chapter's quick check is one call, ``viz.quiz.quick_check(question, ...)``, whose result displays as
self-contained HTML with inline JavaScript: no CDN, no network, no kernel. It works in the static HTML book, where
no Python runs, and in JupyterLab, which runs the inline script of a trusted output (any output of a cell the
student ran). Two kinds of question:

- :func:`choice`: multiple choice with exactly one right option; every wrong option carries its own hint, which
  names the misconception behind it, and the right one an explanation;
- :func:`numeric`: a number with a tolerance and an optional unit, and a hint for a wrong value. The answer field
  is read leniently: spaces and thousands separators (``1 088``, ``1,088``), a decimal comma (``0,25``), a
  fraction (``1/3``), ``e`` notation, a unicode minus, and the unit itself (``125 ms``, ``12.5 %``).

The numbers of a question come from the package or from code in the chapter's cell (``f"...{features.N_MELS}..."``),
never typed in, so a question cannot go stale when a constant changes.

**A self-check, not an exam.** The HTML keeps the answers out of plain view: the verdicts and explanations are
stored XOR-ed with a random per-render key and base64-encoded in a data attribute, and the option buttons look alike
whichever one is right, so reading the page source does not give the answer away at a glance. Anyone can decode it
with the script that sits next to it (the key is in the page too), and the notebook cell that builds the quiz states
the answers: JupyterLab shows it collapsed and the book's pages leave it out, but the notebook itself holds it. Do not
use it for grading.

The Python side checks answers the same way the page does (:meth:`Choice.check`, :meth:`Numeric.check`,
:func:`parse_number`); the package's tests drive the page in Chromium and compare.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import numbers
import random
import re
import uuid
from dataclasses import dataclass

from dmf2mel.errors import UserError

__all__ = [
    "Choice",
    "Feedback",
    "Numeric",
    "Option",
    "Quiz",
    "choice",
    "format_number",
    "numeric",
    "parse_number",
    "quick_check",
]

#: What the page says before the verdict of a right and of a wrong answer.
RIGHT, WRONG = "Correct.", "Not quite."
#: The letters of the options, in the order shown.
LETTERS = "ABCDEFGH"
#: Whitespace, including no-break and thin spaces, which a number may contain ("160 000").
_SPACE = re.compile(r"\s+")
# ASCII digits only, as in the page's JavaScript
_GROUPED = re.compile(r"[+-]?[1-9][0-9]{0,2}(?:,[0-9]{3})+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_FRACTION = re.compile(r"([+-]?[0-9]+)/([0-9]+)")
#: Relative slack for rounding when a tolerance is zero (0.1 + 0.2 must equal 0.3).
_ROUNDING = 1e-9


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer: whether it is right, and the message the page shows for it."""

    correct: bool
    message: str
    valid: bool = True  # False when a numeric answer could not be read as a number


@dataclass(frozen=True)
class Option:
    """One option of a multiple-choice question.

    Parameters
    ----------
    text : str
        What the option says.
    feedback : str
        For a wrong option, the hint shown when it is chosen (required: it names the misconception); for the right
        option, the explanation shown after "Correct." (may be empty).
    correct : bool, default False
    """

    text: str
    feedback: str = ""
    correct: bool = False


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{name} must be a non-empty string, got {value!r}", parameter=name)
    return value.strip()


def _sentence(prefix: str, text: str) -> str:
    return f"{prefix} {text}".strip()


@dataclass(frozen=True)
class Choice:
    """A multiple-choice question with exactly one right option; shown in the order of ``options``.

    Raises
    ------
    UserError (a ValueError)
        Fewer than two or more than eight options, not exactly one right option, repeated option texts, an empty
        question or option text, or a wrong option without a hint.
    """

    question: str
    options: tuple[Option, ...]

    def __post_init__(self):
        _text("question", self.question)
        options = tuple(self.options)
        object.__setattr__(self, "options", options)
        if not 2 <= len(options) <= len(LETTERS):
            raise UserError(f"a question needs 2 to {len(LETTERS)} options, got {len(options)}", parameter="options")
        if not all(isinstance(option, Option) for option in options):
            raise UserError("options must be Option instances", parameter="options")
        n_right = sum(bool(option.correct) for option in options)
        if n_right != 1:
            raise UserError(f"exactly one option must be correct, got {n_right}: {self.question!r}", "options")
        texts = [_text("option text", option.text) for option in options]
        if len(set(texts)) != len(texts):
            raise UserError(f"repeated option text in {self.question!r}", parameter="options")
        for option in options:
            if not option.correct and not (isinstance(option.feedback, str) and option.feedback.strip()):
                raise UserError(f"the wrong option {option.text!r} needs a hint (its feedback)", parameter="options")

    @property
    def answer(self) -> int:
        """The index of the right option."""
        return next(i for i, option in enumerate(self.options) if option.correct)

    def check(self, index: int) -> Feedback:
        """The verdict on choosing option ``index`` (0-based, in the order shown)."""
        if not 0 <= index < len(self.options):
            raise UserError(f"index must be in 0..{len(self.options) - 1}, got {index}", parameter="index")
        option = self.options[index]
        return Feedback(option.correct, _sentence(RIGHT if option.correct else WRONG, option.feedback.strip()))

    def text_lines(self) -> list[str]:
        return [self.question] + [f"   {LETTERS[i]}. {option.text}" for i, option in enumerate(self.options)]

    def _payload(self) -> dict:
        verdicts = [self.check(i) for i in range(len(self.options))]
        return {"kind": "choice", "verdicts": [[v.correct, v.message] for v in verdicts]}


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise UserError(f"{name} must be a finite number, got {value!r}", parameter=name)
    return float(value)


def format_number(value: float) -> str:
    """A number as a reader writes it: up to six significant digits, thousands separated by commas."""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.6g}"


def _unit_key(unit: str) -> str:
    return _SPACE.sub("", unit).lower()


def parse_number(text: str, unit: str = "") -> float | None:
    """Read a typed answer leniently; None when it is not a number.

    Accepted: surrounding and inner spaces (``160 000``), thousands commas (``1,088``; a group of three digits
    after a leading 1-3 digit group), a decimal comma (``0,25``, ``12,5``: one comma otherwise), a fraction
    (``1/3``), ``e`` notation, a unicode minus, and ``unit`` at the end (``125 ms``; for ``%``, ``12.5%``).
    ``nan``, ``inf`` and overflowing values are not numbers here. The page's script applies the same rules.
    """
    if not isinstance(text, str):
        return None
    value = _SPACE.sub("", text.replace("\u2212", "-"))
    key = _unit_key(unit)
    if key and value.lower().endswith(key):
        value = value[: len(value) - len(key)]
    if "," in value:
        if _GROUPED.fullmatch(value):
            value = value.replace(",", "")
        elif value.count(",") == 1 and "." not in value:
            value = value.replace(",", ".")
        else:
            return None
    fraction = _FRACTION.fullmatch(value)
    if fraction:
        numerator, denominator = int(fraction.group(1)), int(fraction.group(2))
        try:
            return numerator / denominator if denominator else None
        except OverflowError:
            return None
    number = float(value) if _DECIMAL.fullmatch(value) else math.nan
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class Numeric:
    """A question answered with a number.

    Parameters
    ----------
    question : str
    answer : float
        The right value, computed in the chapter (never typed in).
    tolerance : float, default 0
        Accepted absolute error.
    relative : float, default 0
        Accepted error as a fraction of ``|answer|``; the larger of the two limits applies (with a 1e-9 relative
        slack for rounding).
    unit : str, default ""
        Shown after the field and accepted at the end of an answer.
    hint : str
        Shown for a wrong value (required).
    explanation : str, default ""
        Shown after "Correct: <answer>."

    Raises
    ------
    UserError (a ValueError)
        An empty question or hint, a non-finite answer, a negative tolerance or relative tolerance.
    """

    question: str
    answer: float
    tolerance: float = 0.0
    relative: float = 0.0
    unit: str = ""
    hint: str = ""
    explanation: str = ""

    def __post_init__(self):
        _text("question", self.question)
        object.__setattr__(self, "answer", _number("answer", self.answer))
        for name in ("tolerance", "relative"):
            value = _number(name, getattr(self, name))
            if value < 0:
                raise UserError(f"{name} must be >= 0, got {value}", parameter=name)
            object.__setattr__(self, name, value)
        if not isinstance(self.unit, str):
            raise UserError(f"unit must be a string, got {self.unit!r}", parameter="unit")
        object.__setattr__(self, "hint", _text("hint", self.hint))
        if not isinstance(self.explanation, str):
            raise UserError(f"explanation must be a string, got {self.explanation!r}", parameter="explanation")

    @property
    def limit(self) -> float:
        """The largest accepted distance from the answer."""
        scale = abs(self.answer)
        return max(self.tolerance, self.relative * scale) + _ROUNDING * max(1.0, scale)

    def accepts(self, value: float) -> bool:
        """Whether ``value`` lies within the tolerance of the answer."""
        return math.isfinite(value) and abs(value - self.answer) <= self.limit

    def _messages(self) -> dict[str, str]:
        shown = format_number(self.answer) + (f" {self.unit}" if self.unit and self.unit != "%" else self.unit)
        unit = f" (in {self.unit})" if self.unit else ""
        return {
            "right": _sentence(f"Correct: {shown}.", self.explanation.strip()),
            "wrong": _sentence(WRONG, self.hint),
            "invalid": f"Type a number{unit}, such as 12.5, 1,088 or 1/3.",
        }

    def check(self, text: str) -> Feedback:
        """The verdict on the typed answer ``text``, as the page gives it."""
        messages = self._messages()
        value = parse_number(text, self.unit)
        if value is None:
            return Feedback(False, messages["invalid"], valid=False)
        right = self.accepts(value)
        return Feedback(right, messages["right" if right else "wrong"])

    def text_lines(self) -> list[str]:
        return [self.question, f"   (a number{f', in {self.unit}' if self.unit else ''})"]

    def _payload(self) -> dict:
        return {"kind": "numeric", "answer": self.answer, "limit": self.limit, "unit": self.unit, **self._messages()}


def choice(question: str, right: tuple[str, str] | str, *wrong: tuple[str, str], shuffle: bool = True) -> Choice:
    """A multiple-choice question: the right option first, then the wrong ones, each with its hint.

    Parameters
    ----------
    question : str
    right : (text, explanation) or text
        The right option and, optionally, why it is right.
    *wrong : (text, hint)
        The wrong options, each with the hint that names its misconception.
    shuffle : bool, default True
        Show the options in an order drawn from the question's text (the same at every render, and not with the
        right one always first); False keeps the order given.

    Examples
    --------
    >>> q = choice("2 + 2?", ("4", "Two pairs."), ("5", "One too many."), ("3", "One too few."), shuffle=False)
    >>> q.check(1).message
    'Not quite. One too many.'
    """
    right_text, explanation = (right, "") if isinstance(right, str) else _pair("right", right)
    options = [Option(right_text, explanation, correct=True)]
    options += [Option(*_pair("wrong option", option)) for option in wrong]
    if shuffle:
        seed = int.from_bytes(hashlib.sha256(question.encode("utf-8")).digest()[:8], "big")
        random.Random(seed).shuffle(options)
    return Choice(question, tuple(options))


def _pair(name: str, value: object) -> tuple[str, str]:
    if not (isinstance(value, tuple) and len(value) == 2):
        raise UserError(f"each {name} must be a (text, feedback) tuple, got {value!r}", parameter=name)
    return value


def numeric(
    question: str,
    answer: float,
    *,
    hint: str,
    tolerance: float = 0.0,
    relative: float = 0.0,
    unit: str = "",
    explanation: str = "",
) -> Numeric:
    """A question answered with a number (see :class:`Numeric`)."""
    return Numeric(question, answer, tolerance, relative, unit, hint, explanation)


def _encode(payload: object, key: str) -> str:
    """``payload`` as JSON, its UTF-8 bytes XOR-ed with ``key`` and base64-encoded: out of plain view, no more."""
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    secret = key.encode("ascii")
    return base64.b64encode(bytes(b ^ secret[i % len(secret)] for i, b in enumerate(data))).decode("ascii")


def _decode(encoded: str, key: str) -> object:
    """The inverse of :func:`_encode` (for the tests; the page has its own)."""
    data = base64.b64decode(encoded)
    secret = key.encode("ascii")
    return json.loads(bytes(b ^ secret[i % len(secret)] for i, b in enumerate(data)).decode("utf-8"))


_INLINE_CODE = re.compile(r"`([^`]+)`")


def _markup(text: str) -> str:
    """Escaped HTML of a question or option; `code` spans become <code>."""
    return _INLINE_CODE.sub(r"<code>\1</code>", html.escape(text))


STYLE = """
.dmf2mel-quiz{margin:.5em 0 1em;font-size:.95em;line-height:1.45}
.dmf2mel-quiz fieldset{border:1px solid rgba(127,127,127,.45);border-radius:6px;margin:0 0 .8em;padding:.5em .9em .7em}
.dmf2mel-quiz legend{font-weight:600;padding:0 .3em;max-width:100%;white-space:normal}
.dmf2mel-quiz .dmf2mel-quiz-option{display:block;width:100%;text-align:left;margin:.3em 0;padding:.35em .6em;
  font:inherit;color:inherit;background:transparent;border:1px solid rgba(127,127,127,.55);border-radius:4px;
  cursor:pointer}
.dmf2mel-quiz .dmf2mel-quiz-option:hover{background:rgba(127,127,127,.12)}
.dmf2mel-quiz .dmf2mel-quiz-option.dmf2mel-quiz-right{border-color:#2e7d32;background:rgba(46,125,50,.14)}
.dmf2mel-quiz .dmf2mel-quiz-option.dmf2mel-quiz-wrong{border-color:#c62828;background:rgba(198,40,40,.10)}
.dmf2mel-quiz input{font:inherit;color:inherit;background:transparent;width:10em;padding:.25em .4em;
  border:1px solid rgba(127,127,127,.55);border-radius:4px}
.dmf2mel-quiz .dmf2mel-quiz-check{font:inherit;color:inherit;background:rgba(127,127,127,.12);margin-left:.4em;
  padding:.25em .7em;border:1px solid rgba(127,127,127,.55);border-radius:4px;cursor:pointer}
.dmf2mel-quiz .dmf2mel-quiz-feedback{margin-top:.4em;min-height:1.2em}
.dmf2mel-quiz .dmf2mel-quiz-feedback[data-state=right]{color:#2e7d32}
.dmf2mel-quiz .dmf2mel-quiz-feedback[data-state=wrong],
.dmf2mel-quiz .dmf2mel-quiz-feedback[data-state=invalid]{color:#c62828}
.dmf2mel-quiz .dmf2mel-quiz-nojs{font-style:italic;opacity:.8}
"""

# The page's half of the checks: decode the payload, mark options, read numbers as parse_number does.
SCRIPT = r"""
(function () {
  var me = document.currentScript;
  var root = (me && me.closest(".dmf2mel-quiz")) || document.getElementById(ROOT_ID);
  if (!root || root.getAttribute("data-ready")) return;
  var key = root.getAttribute("data-key"), raw = atob(root.getAttribute("data-quiz"));
  var bytes = new Uint8Array(raw.length);
  for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i) ^ key.charCodeAt(i % key.length);
  var questions = JSON.parse(new TextDecoder("utf-8").decode(bytes));
  var GROUPED = /^[+-]?[1-9][0-9]{0,2}(?:,[0-9]{3})+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?$/;
  var DECIMAL = /^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;
  var FRACTION = /^([+-]?[0-9]+)\/([0-9]+)$/;
  function parse(text, unit) {
    var value = text.replace(/\u2212/g, "-").replace(/\s+/g, "");
    var suffix = unit.replace(/\s+/g, "").toLowerCase();
    if (suffix && value.toLowerCase().endsWith(suffix)) value = value.slice(0, value.length - suffix.length);
    if (value.indexOf(",") >= 0) {
      if (GROUPED.test(value)) value = value.replace(/,/g, "");
      else if (value.split(",").length === 2 && value.indexOf(".") < 0) value = value.replace(",", ".");
      else return null;
    }
    var fraction = FRACTION.exec(value);
    if (fraction) return Number(fraction[2]) ? Number(fraction[1]) / Number(fraction[2]) : null;
    return DECIMAL.test(value) ? Number(value) : null;
  }
  function say(box, state, message) { box.setAttribute("data-state", state); box.textContent = message; }
  root.querySelectorAll("fieldset[data-index]").forEach(function (field) {
    var q = questions[Number(field.getAttribute("data-index"))];
    var box = field.querySelector(".dmf2mel-quiz-feedback");
    if (q.kind === "choice") {
      field.querySelectorAll(".dmf2mel-quiz-option").forEach(function (button) {
        button.addEventListener("click", function () {
          var verdict = q.verdicts[Number(button.getAttribute("data-option"))];
          button.classList.add(verdict[0] ? "dmf2mel-quiz-right" : "dmf2mel-quiz-wrong");
          button.setAttribute("aria-pressed", "true");
          say(box, verdict[0] ? "right" : "wrong", verdict[1]);
        });
      });
      return;
    }
    var input = field.querySelector("input");
    function check() {
      var value = parse(input.value, q.unit);
      if (value === null || !isFinite(value)) return say(box, "invalid", q.invalid);
      var right = Math.abs(value - q.answer) <= q.limit;
      say(box, right ? "right" : "wrong", right ? q.right : q.wrong);
    }
    field.querySelector(".dmf2mel-quiz-check").addEventListener("click", check);
    input.addEventListener("keydown", function (event) { if (event.key === "Enter") check(); });
  });
  var notice = root.querySelector(".dmf2mel-quiz-nojs");
  if (notice) notice.remove();
  root.setAttribute("data-ready", "true");
})();
"""


class Quiz:
    """Questions that display as a self-checking quiz (HTML + inline JavaScript) and as plain text.

    Parameters
    ----------
    *questions : Choice or Numeric
        One or more questions, shown in order.
    """

    def __init__(self, *questions: Choice | Numeric):
        if not questions:
            raise UserError("a quiz needs at least one question", parameter="questions")
        for question in questions:
            if not isinstance(question, (Choice, Numeric)):
                raise UserError(f"a question must be a Choice or a Numeric, got {question!r}", parameter="questions")
        self.questions = tuple(questions)

    def __len__(self) -> int:
        return len(self.questions)

    def __repr__(self) -> str:
        lines = [f"Quick check: {len(self)} question{'s' if len(self) > 1 else ''} (the HTML view checks answers)"]
        for number, question in enumerate(self.questions, start=1):
            first, *rest = question.text_lines()
            lines += [f"{number}. {first}", *rest]
        return "\n".join(lines)

    def _field(self, index: int, question: Choice | Numeric, root: str) -> str:
        legend = f"<legend>{index + 1}. {_markup(question.question)}</legend>"
        feedback = '<div class="dmf2mel-quiz-feedback" role="status" aria-live="polite"></div>'
        if isinstance(question, Choice):
            body = "".join(
                f'<button type="button" class="dmf2mel-quiz-option" data-option="{i}" aria-pressed="false">'
                f"{LETTERS[i]}. {_markup(option.text)}</button>"
                for i, option in enumerate(question.options)
            )
        else:
            field = f"{root}-q{index}"
            unit = f" <span>{html.escape(question.unit)}</span>" if question.unit else ""
            body = (
                f'<label for="{field}">Your answer:</label> '
                f'<input id="{field}" type="text" inputmode="decimal" autocomplete="off" spellcheck="false">{unit}'
                '<button type="button" class="dmf2mel-quiz-check">Check</button>'
            )
        return f'<fieldset data-index="{index}">{legend}{body}{feedback}</fieldset>'

    def to_html(self, key: str | None = None) -> str:
        """The quiz as one self-contained HTML fragment; ``key`` (default: random) also makes its element ids."""
        key = key or uuid.uuid4().hex
        if not re.fullmatch(r"[0-9a-zA-Z]{8,64}", key):
            raise UserError("key must be 8-64 letters or digits", parameter="key")
        root = f"dmf2mel-quiz-{key}"
        payload = _encode([question._payload() for question in self.questions], key)
        fields = "".join(self._field(i, question, root) for i, question in enumerate(self.questions))
        notice = (
            '<p class="dmf2mel-quiz-nojs">The answers are checked by JavaScript: run this cell in JupyterLab, or '
            "read the chapter in the HTML book.</p>"
        )
        script = SCRIPT.replace("ROOT_ID", json.dumps(root))
        return (
            f'<div class="dmf2mel-quiz" id="{root}" data-key="{key}" data-quiz="{payload}">'
            f"<style>{STYLE}</style>{notice}{fields}<script>{script}</script></div>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()


def quick_check(*questions: Choice | Numeric) -> Quiz:
    """A chapter's quick check: ``questions`` (from :func:`choice` and :func:`numeric`) as one :class:`Quiz`."""
    return Quiz(*questions)
