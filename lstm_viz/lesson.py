"""A guided lesson: eight steps a teacher opens from a link, each setting up one view of the app, pointing at the
part of the page to look at and asking a question to predict before the answer is shown. No streamlit.

Each step holds a full state (settings, sources, view), not a change to the one before: a step looks the same
whichever step, or link, came before it. The facts its texts state are checked against lstm_viz in
tests/test_lesson.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import links
from .pipeline import AppConfig
from .shapes import CLASSIC_PRESET
from .unit_ranking import UnitScore
from .view import TABS, Sources, View

# Where to look, as CSS selectors: Streamlit gives an element with key k the class st-key-k.
EXPLORER = ".st-key-explorer"
SHAPES_TAB = f".st-key-tab [data-testid='stTab'][data-key='{list(TABS).index('shapes')}']"  # the tab's label
TAB_PANEL = ".st-key-tab [role='tabpanel']"  # the open tab's panel (the others have no role)
UNIT_LINES = ".st-key-unit_lines"
DIRECTION = ".st-key-direction"
EQUATIONS = ".st-key-equations"


@dataclass(frozen=True)
class Step:
    """One step of the lesson: the view it sets up, what to look at, a question and its answer."""

    key: str  # stable: links name it
    title: str
    look: str  # what to do and look at: a few short sentences (Markdown)
    config: AppConfig
    sources: Sources
    view: View
    highlight: str  # CSS selector of the part of the page to look at
    where: str  # that part in words ("the Shapes tab, below"): the page outlines it, the panel names it
    question: str
    answer: str
    choices: tuple[str, ...] = ()
    correct: int | None = None  # index in `choices` of the right one
    trained_task: str = ""  # a toy task this step shows trained ("" for none): entering the step trains it
    best_unit: bool = False  # once trained, show the unit that tracks the task best (lstm_viz.unit_ranking)


CLASSIC = AppConfig(**CLASSIC_PRESET, input_source="random")
SMALL = AppConfig(input_size=3, hidden_size=4, seq_len=6, batch_size=1)
BIDIRECTIONAL = AppConfig(input_size=4, hidden_size=8, seq_len=8, batch_size=1, bidirectional=True)
MEMORY = Sources(model_source="toy task", task="memory")
BRACKETS = Sources(model_source="toy task", task="brackets")

STEPS: tuple[Step, ...] = (
    Step("shapes", "The PyTorch docs example and its shapes",
         "This is `nn.LSTM(10, 20, 2)` fed `torch.randn(5, 3, 10)`, the example in PyTorch's documentation. "
         "Once the class has predicted, open the Shapes tab to check: it lists every tensor going in and coming "
         "out, with what each axis means.",
         CLASSIC, Sources(), View(tab="step"), SHAPES_TAB, "the Shapes tab, below",
         "The input is (5, 3, 10). What shapes are `output` and `h_n`?",
         "`output` is **(5, 3, 20)**: the top layer's h at each of the 5 steps, for each of the 3 sequences. "
         "`h_n` is **(2, 3, 20)**: the last step's h of each of the 2 layers. nn.LSTM is time-major: the 5 is the "
         "sequence, the 3 the batch; 20 is hidden_size.",
         ("(5, 3, 20) and (2, 3, 20)", "(3, 5, 20) and (3, 2, 20)", "(5, 3, 20) and (5, 3, 20)",
          "(5, 3, 10) and (2, 3, 10)"), 0),
    Step("step-through", "Stepping through time",
         "The top heatmaps are one gate or state each at step t: a row per sequence of the batch (3), a column per "
         "unit (20); the diagram beside them works one unit's step out with its numbers, and the heatmaps below "
         "show one sequence over all 5 steps. Step with → or the buttons.",
         CLASSIC, Sources(), View(tab="step"), EXPLORER, "the time explorer, below",
         "nn.LSTM starts from zero states when none are given. At the first step, t = 0, what can the forget "
         "gate f do to the cell state?",
         "Nothing: f multiplies the previous cell state, which is all zeros, so c at t = 0 is just i ⊙ g, "
         "whatever f is. The forget gate starts to matter at t = 1.",
         ("Nothing: there is nothing to forget yet", "Erase part of c", "Double c"), 0),
    Step("equations", "One step of the equations, with numbers",
         "Open **Equations at t = 3, typeset** under the explorer. Each gate's line splits its pre-activation into "
         "the input part W x_t, the recurrent part W h_{t−1} and the bias, with this step's numbers for unit 2; "
         "the last lines compute c_t and h_t from them.",
         SMALL, Sources(), View(tab="step", timestep=3, unit=2), EQUATIONS,
         "the equations, under the explorer",
         "h_t = o_t · tanh(c_t). Whatever the weights and the input, can h_t be above 1 or below −1?",
         "No: o_t lies between 0 and 1 and tanh(c_t) between −1 and 1, so |h_t| < 1, even when c_t itself is far "
         "beyond 1. (With proj_size, h_t = W_hr m_t is a projection and can be larger.)",
         ("Yes, when c_t is large", "No, never", "Only at t = 0"), 1),
    Step("memory-untrained", "Remembering, before training",
         "The memory task: the value at the first step (flagged by a marker) must come out at the last step, 24 "
         "steps later. These are the weights training starts from: random, with the forget gate's bias raised by 2 "
         "so that f starts near σ(2) ≈ 0.88. The lines are one unit's gates and states over time.",
         AppConfig(), MEMORY, View(tab="unit", snapshot=0), UNIT_LINES,  # snapshot 0: the weights at init
         "the unit's lines, in the Unit drill-down tab below",
         "If f stays near 0.88 at every step, how much of what was stored at t = 0 is left at t = 24?",
         "About 5%: each step multiplies c by f, and 0.88²⁴ ≈ 0.05. Before training every unit here keeps less "
         "than 12% of its cell state from t = 1 to t = 24 (the product of its f over those steps): a forget gate "
         "a little below 1 forgets within a few dozen steps.",
         ("About 88%", "About half", "About 5%", "All of it"), 2),
    Step("memory-trained", "The forget gate holds",
         "The same task after training (it trains here, in a few seconds). Shown: the unit that tracks the stored "
         "value best. Watch its f line from t = 1 to the end.",
         AppConfig(), MEMORY, View(tab="unit"), UNIT_LINES, "the unit's lines, in the Unit drill-down tab below",
         "What does this unit's forget gate do between t = 1 and t = 24?",
         "It sits at about 1 (above 0.99 at every step of the hold): the cell state is carried across the 24 noisy "
         "steps almost unchanged, so the stored value is still there to be read out at the end. Training learnt to "
         "hold the gate open.",
         ("Stays near 0.88, as before training", "Sits at about 1", "Drops to 0", "Follows the noise"), 1,
         trained_task="memory", best_unit=True),
    Step("brackets", "A unit that counts brackets",
         "This LSTM was trained (here, in a few seconds) to output how many brackets are open after each "
         "character of a text of '(', ')', 'a' and 'b'. Shown: the unit whose cell state follows that depth most "
         "closely. The time axis is labelled with the characters read.",
         AppConfig(), BRACKETS, View(tab="unit"), UNIT_LINES, "the unit's lines, in the Unit drill-down tab below",
         "As the text reads '(', '(', 'a', ')', what does this unit's cell state c do?",
         "It steps one way at each '(' and back at each ')', while letters move it far less: its c follows the "
         "depth. Nobody told it to count; a counter is what the loss rewarded.",
         ("Steps one way at '(' and back at ')'", "Jumps at every character", "Stays flat"), 0,
         trained_task="brackets", best_unit=True),
    Step("bidirectional", "What the reverse direction sees",
         "bidirectional=True runs a second LSTM over the sequence from its last step to its first. The direction "
         "chosen above the explorer is the reverse one; the sequence has 8 steps, t = 0 … 7.",
         BIDIRECTIONAL, Sources(), View(tab="step", timestep=3, direction=1), f"{DIRECTION}, {EXPLORER}",
         "the direction chosen and the explorer, below",
         "At t = 3, which inputs has the reverse direction's state read?",
         "x_3 … x_7: it starts at the last step and has come down to t = 3, so at t it has read t … T−1, the "
         "future of t. The forward direction at t = 3 has read x_0 … x_3; `output[t]` puts the two side by side.",
         ("x_0 … x_3", "x_3 … x_7", "All eight", "Only x_3"), 1),
    Step("bidirectional-ends", "Where each direction ends",
         "The same bidirectional LSTM: `output` is (8, 1, 16), the forward and reverse h (8 units each) side by "
         "side at every step; `h_n` is (2, 1, 8), the final h of each direction.",
         BIDIRECTIONAL, Sources(), View(tab="shapes"), TAB_PANEL, "the Shapes tab, below",
         "Is `output[-1]`, the last step, the final state of both directions?",
         "Only its first half: `output[-1, :, :8]` is the forward direction's `h_n[0]`. The reverse direction ends "
         "at t = 0, so its final state `h_n[1]` is `output[0, :, 8:]`.",
         ("Yes, both halves", "Only the forward half", "Only the reverse half"), 1),
)
STEP_KEYS = tuple(step.key for step in STEPS)
_BY_KEY = {step.key: step for step in STEPS}


def step(key: str) -> Step:
    """The step with this key (KeyError for an unknown one)."""
    return _BY_KEY[key]


def position(key: str) -> int:
    """The step's place in the lesson, from 0."""
    return STEP_KEYS.index(key)


def neighbour(key: str, offset: int) -> str | None:
    """The key of the step `offset` places from `key` (−1 back, +1 next), or None past either end."""
    index = position(key) + offset
    return STEP_KEYS[index] if 0 <= index < len(STEP_KEYS) else None


def best_cell_unit(ranking: list[UnitScore]) -> UnitScore:
    """The unit whose cell state c follows the task's hidden variable most closely, from a ranking
    (unit_ranking.rank_units, best first)."""
    return next(score for score in ranking if score.quantity == "c")


@dataclass(frozen=True)
class Lesson:
    """Whether the page runs the lesson, at which step, and whether for a class (fewer controls)."""

    lesson: str = ""  # the step's key; "" when no lesson runs
    classroom: bool = False

    CHOICES = {"lesson": STEP_KEYS}

    @property
    def step(self) -> Step | None:
        return _BY_KEY.get(self.lesson)

    def to_query(self) -> dict[str, str]:
        return links.to_query(self)

    @classmethod
    def from_query(cls, params: dict[str, str]) -> tuple[Lesson, list[str]]:
        return links.from_query(cls, params, choices=cls.CHOICES)


def link_query(key: str, classroom: bool = False) -> str:
    """The query string of a link to a step: the step's setup travels with its key, so the key is all it needs."""
    return "?" + "&".join(f"{name}={value}" for name, value in Lesson(key, classroom).to_query().items())
