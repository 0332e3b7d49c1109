"""The chapters' quick checks (``dmf2mel.viz.quiz``): construction, answers kept out of plain view, the checks in
Python, and the same checks on a page in a real browser (Debian's Chromium through Playwright, no book build)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dmf2mel.errors import UserError
from dmf2mel.viz import quiz
from dmf2mel.viz.quiz import Choice, Numeric, Option, Quiz, choice, numeric, parse_number, quick_check

# Marker words that must never appear in plain view (none of them can occur in base64: they hold spaces).
EXPLANATION = "because of the explanation marker"
HINTS = ("hint marker for five", "hint marker for three")
NUMERIC_HINT = "numeric hint marker"
NUMERIC_EXPLANATION = "numeric explanation marker"
ANSWER = 98765.4321  # "." never occurs in base64


def sample_quiz() -> Quiz:
    return quick_check(
        choice("What is 2 + 2?", ("four", EXPLANATION), ("five", HINTS[0]), ("three", HINTS[1]), shuffle=False),
        numeric(
            "Which number is this?",
            ANSWER,
            tolerance=0.5,
            unit="ms",
            hint=NUMERIC_HINT,
            explanation=NUMERIC_EXPLANATION,
        ),
        numeric("What share is it?", 12.5, relative=0.01, unit="%", hint="Give it in percent."),
    )


# Construction -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Choice("Q?", (Option("a", "h"), Option("b", "h"))), "exactly one option must be correct, got 0"),
        (lambda: Choice("Q?", (Option("a", correct=True), Option("b", correct=True))), "got 2"),
        (lambda: Choice("Q?", (Option("a", correct=True),)), "2 to 8 options"),
        (lambda: Choice("Q?", (Option("a", correct=True), Option("b"))), "needs a hint"),
        (lambda: Choice("Q?", (Option("a", correct=True), Option("b", "   "))), "needs a hint"),
        (lambda: Choice("Q?", (Option("a", correct=True), Option("a", "h"))), "repeated option text"),
        (lambda: Choice(" ", (Option("a", correct=True), Option("b", "h"))), "question must be a non-empty"),
        (lambda: Choice("Q?", (Option("", correct=True), Option("b", "h"))), "option text must be a non-empty"),
        (lambda: choice("Q?", ("a", "why"), "b"), "must be a (text, feedback) tuple"),
        (lambda: numeric("Q?", 1.0, hint="h", tolerance=-0.1), "tolerance must be >= 0"),
        (lambda: numeric("Q?", 1.0, hint="h", relative=-1e-3), "relative must be >= 0"),
        (lambda: numeric("Q?", float("nan"), hint="h"), "answer must be a finite number"),
        (lambda: numeric("Q?", "3", hint="h"), "answer must be a finite number"),
        (lambda: numeric("Q?", True, hint="h"), "answer must be a finite number"),
        (lambda: numeric("Q?", 1.0, hint=""), "hint must be a non-empty"),
        (lambda: Numeric("Q?", 1.0), "hint must be a non-empty"),
        (lambda: Quiz(), "at least one question"),
        (lambda: quick_check("What?"), "must be a Choice or a Numeric"),
    ],
)
def test_construction_is_validated_with_clear_value_errors(build, message):
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        build()
    assert isinstance(raised.value, UserError)


def test_numbers_from_numpy_are_answers():
    np = pytest.importorskip("numpy")
    assert numeric("Q?", np.int64(1088), hint="h").answer == 1088.0
    assert numeric("Q?", np.float32(0.5), hint="h", tolerance=np.float64(0.1)).tolerance == pytest.approx(0.1)


def test_choice_puts_the_right_option_first_and_shuffles_the_shown_order_reproducibly():
    question = choice("Which?", ("right", "why"), ("w1", "h1"), ("w2", "h2"), shuffle=False)
    assert [o.text for o in question.options] == ["right", "w1", "w2"] and question.answer == 0
    shuffled = [choice(f"Question {i}?", ("right", "why"), ("w1", "h1"), ("w2", "h2"), ("w3", "h3")) for i in range(12)]
    assert len({q.answer for q in shuffled}) > 1, "the right option should not always sit in the same place"
    again = choice("Question 3?", ("right", "why"), ("w1", "h1"), ("w2", "h2"), ("w3", "h3"))
    assert again == shuffled[3], "the order is the same at every render"
    plain = choice("Q?", "just the text", ("w", "h"))
    assert plain.check(plain.answer) == quiz.Feedback(True, "Correct.")


def test_choice_feedback():
    question = sample_quiz().questions[0]
    assert question.check(0).correct and question.check(0).message == f"Correct. {EXPLANATION}"
    assert question.check(1) == quiz.Feedback(False, f"Not quite. {HINTS[0]}")
    assert question.check(2).message == f"Not quite. {HINTS[1]}"
    with pytest.raises(ValueError, match="index must be in 0..2"):
        question.check(3)


# The answers stay out of plain view ----------------------------------------------------------------------------


def test_the_html_holds_no_plain_answer_text():
    page = sample_quiz().to_html()
    for secret in (EXPLANATION, *HINTS, NUMERIC_HINT, NUMERIC_EXPLANATION, "98765", "Correct", "Not quite"):
        assert secret not in page, f"{secret!r} is readable in the HTML"
    visible = re.sub(r"<(script|style)>.*?</\1>", "", page, flags=re.DOTALL)
    assert not re.search(r"correct|right|answer=", visible, flags=re.IGNORECASE)


def test_the_right_option_cannot_be_told_from_the_markup():
    """Two quizzes that differ only in which option is right give the same HTML, payload aside."""
    options = ("one", "two", "three")

    def marked(right: int) -> Quiz:
        return Quiz(
            Choice("Which?", tuple(Option(t, f"because {t}", correct=i == right) for i, t in enumerate(options)))
        )

    pages = [re.sub(r'data-quiz="[^"]*"', "", marked(i).to_html("fixedkey1")) for i in range(3)]
    assert pages[0] == pages[1] == pages[2]
    assert [repr(marked(i)) for i in range(3)] == [repr(marked(0))] * 3


def test_the_payload_is_only_obfuscated_and_decodes_to_the_checks():
    sample = sample_quiz()
    page = sample.to_html("0123456789abcdef")
    encoded = re.search(r'data-quiz="([^"]+)"', page).group(1)
    decoded = quiz._decode(encoded, "0123456789abcdef")
    assert decoded[0] == {
        "kind": "choice",
        "verdicts": [
            [True, f"Correct. {EXPLANATION}"],
            [False, f"Not quite. {HINTS[0]}"],
            [False, f"Not quite. {HINTS[1]}"],
        ],
    }
    assert decoded[1]["answer"] == ANSWER and decoded[1]["limit"] == pytest.approx(0.5, rel=1e-3)
    assert decoded[1]["right"] == f"Correct: 98,765.4 ms. {NUMERIC_EXPLANATION}"


def test_every_render_has_its_own_ids_and_key():
    sample = sample_quiz()
    first, second = sample._repr_html_(), sample._repr_html_()
    ids = [re.findall(r'id="([^"]+)"', page) for page in (first, second)]
    assert ids[0] and ids[1] and not set(ids[0]) & set(ids[1])
    assert len(set(ids[0])) == len(ids[0]), "ids repeat within one render"
    keys = [re.search(r'data-key="([^"]+)"', page).group(1) for page in (first, second)]
    assert keys[0] != keys[1]
    with pytest.raises(ValueError, match="key must be"):
        sample.to_html("short")


def test_the_text_repr_lists_questions_and_options_without_answers():
    text = repr(sample_quiz())
    assert text.startswith("Quick check: 3 questions")
    for shown in (
        "1. What is 2 + 2?",
        "A. four",
        "B. five",
        "C. three",
        "2. Which number is this?",
        "(a number, in ms)",
    ):
        assert shown in text
    for secret in (EXPLANATION, *HINTS, NUMERIC_HINT, NUMERIC_EXPLANATION, "98765", "Correct"):
        assert secret not in text


def test_questions_and_options_are_escaped():
    page = Quiz(choice("Is <b> bold & `x < y`?", ("<i>yes</i>", "w"), ("no", "h"))).to_html("abcdefgh")
    assert "<b>" not in page.split("<style>")[0] and "&lt;b&gt; bold &amp; <code>x &lt; y</code>?" in page
    assert "&lt;i&gt;yes&lt;/i&gt;" in page


# Numeric answers -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, unit, value",
    [
        ("1088", "", 1088.0),
        ("  1 088 ", "", 1088.0),
        ("1\u202f088", "", 1088.0),  # a narrow no-break space
        ("1,088", "", 1088.0),
        ("1,234,567.5", "", 1234567.5),
        ("0,25", "", 0.25),
        ("12,5", "", 12.5),
        ("0,125", "", 0.125),
        ("-3.5", "", -3.5),
        ("\u22123.5", "", -3.5),
        (".5", "", 0.5),
        ("2e3", "", 2000.0),
        ("1/3", "", 1 / 3),
        ("12.5%", "%", 12.5),
        ("12,5 %", "%", 12.5),
        ("125 ms", "ms", 125.0),
        ("125MS", "ms", 125.0),
        ("6.4 µV per nA·m", "µV per nA·m", 6.4),
        ("1,2,3", "", None),
        ("1,23.4", "", None),
        ("12%", "", None),
        ("", "", None),
        ("abc", "", None),
        ("nan", "", None),
        ("inf", "", None),
        ("1e999", "", None),
        ("1/0", "", None),
        ("1..2", "", None),
        ("\u0661\u0662", "", None),  # not ASCII digits: the page would not read them either
    ],
)
def test_numbers_are_parsed_leniently(text, unit, value):
    parsed = parse_number(text, unit)
    assert parsed == (pytest.approx(value) if value is not None else None)


def test_numeric_tolerance():
    exact = numeric("Q?", 0.3, hint="h")
    assert exact.accepts(0.1 + 0.2) and not exact.accepts(0.3001)
    absolute = numeric("Q?", -10.0, tolerance=0.5, hint="h")
    assert absolute.accepts(-10.5) and absolute.accepts(-9.5) and not absolute.accepts(-10.51)
    relative = numeric("Q?", 5625.0, relative=0.01, hint="h")
    assert relative.accepts(5625 * 1.0099) and not relative.accepts(5625 * 1.0101)
    both = numeric("Q?", 100.0, tolerance=2.0, relative=0.01, hint="h")
    assert both.accepts(101.9) and not both.accepts(102.1), "the larger limit applies"
    assert not exact.accepts(float("nan"))


def test_numeric_feedback():
    _, number, share = sample_quiz().questions
    assert number.check("98 765,4 ms") == quiz.Feedback(True, f"Correct: 98,765.4 ms. {NUMERIC_EXPLANATION}")
    assert number.check("98,767") == quiz.Feedback(False, f"Not quite. {NUMERIC_HINT}")
    assert not number.check("lots").valid and "Type a number (in ms)" in number.check("lots").message
    assert share.check("12.6%").correct and share.check("12.5").message == "Correct: 12.5%."
    assert not share.check("0.125").correct


def test_format_number():
    assert quiz.format_number(1088.0) == "1,088" and quiz.format_number(0.0625) == "0.0625"
    assert quiz.format_number(1 / 3) == "0.333333" and quiz.format_number(-5625) == "-5,625"


# In a real browser ---------------------------------------------------------------------------------------------

TIMEOUT_MS = 30_000
# JupyterLab puts an output's HTML in with innerHTML and then re-creates each script so that it runs
# (evalInnerHTMLScriptTags); this page does the same with the quiz it is given.
JUPYTERLAB_LIKE = """<!doctype html><html><head><meta charset="utf-8"></head><body><div id="output"></div>
<script>
const host = document.getElementById("output");
host.innerHTML = QUIZ;
host.querySelectorAll("script").forEach(old => {
  const script = document.createElement("script");
  script.textContent = old.textContent;
  old.replaceWith(script);
});
</script></body></html>"""


@pytest.fixture()
def page(browser):
    """A page that may load nothing but files; ``page.errors`` collects JavaScript errors and blocked requests."""
    context = browser.new_context()
    page = context.new_page()
    page.errors = []

    def route(route):
        if route.request.url.startswith(("file:", "data:", "about:")):
            route.continue_()
        else:
            page.errors.append(f"network: {route.request.url}")
            route.abort()

    context.route("**/*", route)
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda message: page.errors.append(message.text) if message.type == "error" else None)
    yield page
    context.close()


def open_page(page, path: Path, document: str):
    path.write_text(document, encoding="utf-8")
    page.goto(path.as_uri(), wait_until="load", timeout=TIMEOUT_MS)


def feedback(field):
    box = field.locator(".dmf2mel-quiz-feedback")
    return box.get_attribute("data-state"), box.inner_text()


def answer(field, text: str):
    field.locator("input").fill(text)
    field.locator(".dmf2mel-quiz-check").click()
    return feedback(field)


def test_the_quiz_checks_answers_in_chromium_offline(page, tmp_path):
    sample = sample_quiz()
    # two renders on one page, as when a cell runs twice: each works on its own
    body = sample._repr_html_() + sample._repr_html_()
    open_page(page, tmp_path / "quiz.html", f'<!doctype html><html><head><meta charset="utf-8"></head><body>{body}')
    quizzes = page.locator(".dmf2mel-quiz")
    assert quizzes.count() == 2
    first, second = quizzes.nth(0), quizzes.nth(1)
    assert first.get_attribute("data-ready") == "true" and second.get_attribute("data-ready") == "true"
    assert page.locator(".dmf2mel-quiz-nojs").count() == 0, "the no-JavaScript notice stays"

    mc = first.locator("fieldset").nth(0)
    mc.get_by_role("button", name="B. five").click()
    assert feedback(mc) == ("wrong", f"Not quite. {HINTS[0]}")
    assert "dmf2mel-quiz-wrong" in mc.get_by_role("button", name="B. five").get_attribute("class")
    mc.get_by_role("button", name="A. four").click()
    assert feedback(mc) == ("right", f"Correct. {EXPLANATION}")
    assert "dmf2mel-quiz-right" in mc.get_by_role("button", name="A. four").get_attribute("class")
    assert feedback(second.locator("fieldset").nth(0)) == (None, ""), "a click answered the other render too"

    number = first.locator("fieldset").nth(1)
    assert answer(number, "98,767") == ("wrong", f"Not quite. {NUMERIC_HINT}")
    assert answer(number, "98 765,4 ms") == ("right", f"Correct: 98,765.4 ms. {NUMERIC_EXPLANATION}")
    assert answer(number, "ninety")[0] == "invalid"
    number.locator("input").fill("98765")
    number.locator("input").press("Enter")
    assert feedback(number)[0] == "right"
    assert not page.errors, page.errors


@pytest.mark.parametrize("unit_question", [1, 2])
def test_the_page_reads_numbers_as_python_does(page, tmp_path, unit_question):
    sample = sample_quiz()
    open_page(page, tmp_path / "quiz.html", f'<!doctype html><meta charset="utf-8"><body>{sample._repr_html_()}')
    field = page.locator(".dmf2mel-quiz fieldset").nth(unit_question)
    question = sample.questions[unit_question]
    typed = [
        "98765.4321",
        "98 765",
        "98,765",
        "98765,4",
        "9.87654321e4",
        "98765 ms",
        "98764",
        "1/3",
        "12.5%",
        "12,5 %",
        "0.125",
        "12,6",
        "\u221212.5",
        "1,2,3",
        "",
        "abc",
        "1e999",
        "12.4 %",
        "197531/2",
    ]
    for text in typed:
        expected = question.check(text)
        state = "right" if expected.correct else "wrong" if expected.valid else "invalid"
        assert answer(field, text) == (state, expected.message), f"the page reads {text!r} differently"
    assert not page.errors, page.errors


def test_the_quiz_works_when_inserted_the_way_jupyterlab_inserts_outputs(page, tmp_path):
    sample = sample_quiz()
    open_page(
        page,
        tmp_path / "lab.html",
        JUPYTERLAB_LIKE.replace("QUIZ", json.dumps(sample._repr_html_()).replace("</", "<\\/")),
    )
    mc = page.locator(".dmf2mel-quiz fieldset").nth(0)
    mc.get_by_role("button", name="C. three").click()
    assert feedback(mc) == ("wrong", f"Not quite. {HINTS[1]}")
    assert answer(page.locator(".dmf2mel-quiz fieldset").nth(2), "12.5 %")[0] == "right"
    assert not page.errors, page.errors


def test_without_javascript_the_quiz_says_where_it_works(browser, tmp_path):
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        open_page(page, tmp_path / "quiz.html", f'<!doctype html><meta charset="utf-8">{sample_quiz()._repr_html_()}')
        assert "run this cell in JupyterLab" in page.locator(".dmf2mel-quiz-nojs").inner_text()
    finally:
        context.close()
