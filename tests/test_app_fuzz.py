"""Random walks through the app's widgets: any sequence of settings a user can make (within each widget's
own bounds) reruns without an exception, and the page always shows a view or says why it cannot."""

from __future__ import annotations

import random

import pytest
from app_support import start

pytestmark = pytest.mark.app

STEPS = 40
BUTTONS = ("preset_classic",)  # not train_task: training takes seconds, test_app_models covers it
TYPED = ("1 2\n3 4", "0.5", "x", "", "1, 2\n\n3, 4", "−1e3, nan")


def random_change(at, rng: random.Random) -> str | None:
    """Make one random change a user could make (not yet run); returns what it was, or None if none applied."""
    kind = rng.choice(("number", "checkbox", "selectbox", "button", "slider", "text"))
    if kind == "number":
        widget = rng.choice([w for w in at.number_input if not w.disabled] or [None])
        if widget is None:
            return None
        low, high = int(widget.min), int(min(widget.max, 40))  # sizes past 40 only slow the walk down
        value = rng.choice([low, high, low + 1, rng.randint(low, high)])
        widget.set_value(type(widget.value)(value))
    elif kind == "checkbox":
        widget = rng.choice([w for w in at.checkbox if not w.disabled] or [None])
        if widget is None:
            return None
        value = not widget.value
        widget.set_value(value)
    elif kind == "selectbox":
        widget = rng.choice([w for w in at.selectbox if not w.disabled] or [None])
        if widget is None:
            return None
        value = rng.choice(widget.options)
        widget.select(value)
    elif kind == "button":
        widget = rng.choice([b for b in at.button if b.key in BUTTONS] or [None])
        if widget is None:
            return None
        value = "click"
        widget.click()
    elif kind == "slider":
        widget = rng.choice(list(at.slider) or [None])
        if widget is None or not isinstance(widget.value, int):
            return None
        value = rng.randint(int(widget.min), int(widget.max))
        widget.set_value(value)
    else:
        widget = rng.choice(list(at.text_area) or [None])
        if widget is None:
            return None
        value = rng.choice(TYPED)
        widget.set_value(value)
    return f"{widget.key}={value!r}"


@pytest.mark.parametrize("seed", range(4))
def test_a_random_walk_through_the_widgets_never_raises(seed):
    rng = random.Random(seed)
    at = start()
    done = []
    for _ in range(STEPS):
        change = random_change(at, rng)
        if change is None:
            continue
        done.append(change)
        at.run()
        assert not at.exception, (done, [e.value for e in at.exception])
        shown = len(at.get("bidi_component")) + len(at.get("plotly_chart")) + len(at.error) + len(at.info)
        assert shown, f"a blank page after {done}"
    assert len(done) >= STEPS // 2
