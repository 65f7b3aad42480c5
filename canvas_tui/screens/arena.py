"""The Arena screen: blind side-by-side votes between our models, as Chatbot Arena runs them.

Every model is loaded once, in its own inference worker (:func:`canvas_tui.chat_models.spawn_worker`,
the Chat screen's :class:`~canvas_tui.screens.chat.Slot`), and kept for the whole session. A prompt
(typed and sent with enter, or drawn with ctrl+n from :func:`engine.eval.arena.prompt_set`) goes to
two of the loaded models picked at random (a :class:`random.Random` seeded with the clock when the
screen opens; the seed is recorded with each battle); which one is "A" is random too. The answers
stream into the columns A and B (:class:`~canvas_tui.widgets.chat_column.ChatColumn`), titled only
"A" and "B", with no model facts (size, speed) that would give them away.

Once both answers have ended the user votes: 1 A better, 2 B better, 3 tie, 4 both bad (digits,
because the prompt box takes letters; it is locked while a battle is open). A vote before both
answers end is refused with a notice. Then the names are revealed, the battle is appended to
``<home>/arena/battles.jsonl`` (:func:`engine.eval.arena.append_battle`), and the ratings are fitted
again in a thread and shown (the side panel; below 100 columns a line under the answers, the
columns stacked). Esc stops a battle (it is dropped, never stored) and, when idle, goes back.

Model text is untrusted: it streams through Markdown (never Textual markup) and every other string
through ``Content``; :func:`~canvas_tui.widgets.chat_column.literal` shows control characters.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import Footer, Header, Input, Static

from canvas_tui import actions
from canvas_tui.chat_models import ClientFactory, ModelChoice, error_text, spawn_worker
from canvas_tui.messages import AnswerDelta, AnswerDone, AnswerFailed
from canvas_tui.screens.base import CanvasScreen
from canvas_tui.screens.chat import (
    Job,
    Sampling,
    Slot,
    SlotClient,
    SlotFailed,
    SlotProgress,
    SlotReady,
    _close_in_background,
    close_slots,
    load_slot,
    progress_text,
    stream_answer,
)
from canvas_tui.widgets.chat_column import Answer, ChatColumn, literal
from engine.runs.meta import RunKind
from engine.serve import protocol

NARROW = 100
SIDES = ("A", "B")
VOTE_TEXT = {
    "model_a": "A is better",
    "model_b": "B is better",
    "tie": "a tie",
    "tie (bothbad)": "both bad",
}


def arena_names(choices: Sequence[ModelChoice]) -> list[str]:
    """The name each model gets in ``battles.jsonl``: its label, " (base)" for a fine-tune with its
    adapter off, then "@checkpoint" or a number when two would still share a name."""
    names = [c.label + (" (base)" if c.kind == RunKind.FINETUNE and not c.adapter else "") for c in choices]
    base = list(names)
    for i, (name, choice) in enumerate(zip(base, choices, strict=True)):
        if base.count(name) > 1 and choice.checkpoint:
            names[i] = f"{name}@{choice.checkpoint}"
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        seen[name] = seen.get(name, 0) + 1
        if names.count(name) > 1 and seen[name] > 1:
            names[i] = f"{name} #{seen[name]}"
    return names


@dataclass(eq=False)
class Contender:
    """One model of the arena: its name in the battles file, its choice, and its worker (a
    :class:`Slot`, shared by a fine-tune with its adapter on and off: the same loaded weights)."""

    name: str
    choice: ModelChoice
    slot: Slot


@dataclass(eq=False)
class Side:
    """A or B in the current battle."""

    label: str
    contender: Contender
    column: ChatColumn
    job: Job = field(default_factory=Job)
    answer: Answer | None = None
    text: str = ""
    done: protocol.Done | None = None
    error: str = ""

    @property
    def ended(self) -> bool:
        return self.done is not None or bool(self.error)


@dataclass(eq=False)
class Round:
    """One battle: the prompt, the two sides, the sampling; ``voted`` once stored."""

    prompt: str
    sides: list[Side]
    sampling: dict[str, Any]
    started: float
    voted: str = ""


# ------------------------------------------------------------------------------------ messages
class PromptsLoaded(Message):
    def __init__(self, prompts: list, error: str = "") -> None:
        super().__init__()
        self.prompts = prompts
        self.error = error


class RatingsFitted(Message):
    def __init__(self, ratings: Any, error: str = "") -> None:
        super().__init__()
        self.ratings = ratings
        self.error = error


def answer_line(done: protocol.Done | None, error: str = "") -> Content:
    """The line under an answer: its length and how it ended, nothing that tells models apart."""
    if error:
        return Content.styled(f"error: {literal(error)}", "$error")
    if done is None:
        return Content.styled("generating…", "$text-muted")
    reason = {"cancelled": "stopped", "length": "max tokens", "stop": "end"}.get(
        done.finish_reason, done.finish_reason
    )
    return Content.styled(f"{done.new_tokens} tokens · {reason}", "$text-muted")


def ratings_content(ratings: Any, highlight: Sequence[str] = ()) -> Content:
    """The ratings panel: one line per model, best first, with its interval and battles."""
    if ratings is None:
        return Content.styled("No battles yet: vote to start the ratings.", "$text-muted")
    count = f"{ratings.n_battles} battle{'' if ratings.n_battles == 1 else 's'}"
    parts: list[Content] = [Content.styled(f"Ratings · {count}\n", "bold")]
    for name in ratings.models:
        r = ratings.ratings[name]
        ci = f" [{r.ci95[0]:.0f}, {r.ci95[1]:.0f}]" if r.ci95 is not None and r.ci95[0] == r.ci95[0] else ""
        line = Content(f"{literal(name)}\n  {r.rating:6.1f}{ci} · {r.battles}\n")
        parts.append(line.stylize("bold", 0, len(literal(name))) if name in highlight else line)
    parts.append(
        Content.styled(
            f"Bradley–Terry, {literal(ratings.anchor)} at {ratings.init:g}; 95% CI from "
            f"{ratings.n_bootstrap} bootstrap rounds"
            + (" (regularised: too few results)" if ratings.regularised else ""),
            "$text-muted",
        )
    )
    return Content.assemble(*parts)


# ------------------------------------------------------------------------------------ the screen
class ArenaScreen(CanvasScreen):
    """Blind votes between two of ``models`` at a time (two or three). ``client_factory``,
    ``sampling``, ``seed``, ``prompts`` and ``battles_file`` exist for tests."""

    SCOPE = "arena"
    BINDINGS = actions.bindings("arena")
    AUTO_FOCUS = "#arena-input"
    DEFAULT_CSS = """
    ArenaScreen #arena-main { height: 1fr; }
    ArenaScreen #arena-area { width: 1fr; height: 1fr; }
    ArenaScreen #arena-prompt { height: auto; max-height: 4; padding: 0 1; background: $boost; }
    ArenaScreen #arena-columns { height: 1fr; }
    ArenaScreen #arena-status { height: auto; max-height: 3; padding: 0 1; color: $text-muted; }
    ArenaScreen #arena-status.-revealed { color: $text; background: $primary 20%; }
    ArenaScreen #arena-input { height: 3; border: round $panel-lighten-2; }
    ArenaScreen #arena-input:focus { border: round $primary; }
    ArenaScreen #arena-side { width: 34; height: 1fr; padding: 0 1; background: $panel; }
    ArenaScreen #arena-side.-hidden { display: none; }
    ArenaScreen.-narrow #arena-columns { layout: vertical; }
    ArenaScreen ChatColumn .column-state { display: none; }
    """

    def __init__(
        self,
        models: Sequence[ModelChoice],
        *,
        client_factory: ClientFactory | None = None,
        sampling: Sampling | None = None,
        seed: int | None = None,
        prompts: Sequence[Any] | None = None,
        battles_file: Path | None = None,
    ) -> None:
        super().__init__()
        self.choices = list(models)
        self.client_factory: ClientFactory = client_factory or spawn_worker
        self.sampling = sampling or Sampling(temperature=0.7, max_new_tokens=256)
        self.seed = time.time_ns() % 2**32 if seed is None else seed
        self.rng = random.Random(self.seed)
        self.prompts: list[Any] | None = list(prompts) if prompts is not None else None
        self.battles_file = battles_file
        slots: dict[tuple[str, str | None], Slot] = {}
        self.contenders = [
            Contender(n, c, slots.setdefault(c.load_key(), Slot(c)))
            for n, c in zip(arena_names(self.choices), self.choices, strict=True)
        ]
        self.slots = list(slots.values())
        self.round: Round | None = None
        self.rounds = 0  # battles stored this session (for tests)
        self.ratings: Any = None
        self.ratings_fits = 0  # ratings fitted (for tests)
        self.last_battle: Any = None

    # ------------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="arena-main"):
            with Vertical(id="arena-area"):
                yield Static(
                    Content.styled(
                        "Type a prompt and press enter, or ctrl+n for one from the prompt set.", "$text-muted"
                    ),
                    id="arena-prompt",
                    markup=False,
                )
                with Horizontal(id="arena-columns"):
                    for i, side in enumerate(SIDES):
                        yield ChatColumn(
                            ModelChoice(model=side, label=side), i, id=f"arena-col-{side.lower()}"
                        )
                yield Static(Content(""), id="arena-status", markup=False)
                yield Input(placeholder="a prompt for two hidden models · enter sends", id="arena-input")
            with VerticalScroll(id="arena-side"):
                yield Static(ratings_content(None), id="arena-ratings", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Arena · blind votes"
        self._apply_width(self.size.width, initial=True)
        self._show_status()
        if len(self.contenders) < 2:
            self.notify("The arena needs two or three models.", severity="error")
        for slot in self.slots:
            slot.loading = True
            self._load(slot)
        if self.prompts is None:
            self._load_prompts()
        self._fit_ratings()

    def on_resize(self, event) -> None:
        self._apply_width(event.size.width)

    def _apply_width(self, width: int, initial: bool = False) -> None:
        if self.set_narrow(width, NARROW) and initial:
            self.query_one("#arena-side").set_class(bool(self.narrow), "-hidden")

    def column(self, side: str) -> ChatColumn:
        return self.query_one(f"#arena-col-{side.lower()}", ChatColumn)

    def _set_title(self, side: str, text: str) -> None:
        self.column(side).query_one(".column-title", Static).update(Content(literal(text)))

    def _show_status(self, text: str | Content | None = None) -> None:
        status = self.query_one("#arena-status", Static)
        if text is None:
            text = self._loading_text()
        status.update(text if isinstance(text, Content) else Content(literal(text)))
        status.set_class(bool(self.round and self.round.voted), "-revealed")

    def _loading_text(self) -> str:
        ready = [c for c in self.contenders if c.slot.ready is not None]
        failed = [c for c in self.contenders if c.slot.error]
        if len(ready) == len(self.contenders):
            return f"{len(ready)} models ready · votes: 1 A better · 2 B better · 3 tie · 4 both bad"
        text = f"loading models: {len(ready)} of {len(self.contenders)} ready"
        if failed:
            text += f" · {len(failed)} failed (see the notice)"
        return text

    # ------------------------------------------------------------------------ loading
    @work(thread=True, exit_on_error=False, group="arena-load")
    def _load(self, slot: Slot) -> None:
        load_slot(self, slot, self.client_factory)

    @on(SlotClient)
    def _on_client(self, message: SlotClient) -> None:
        message.slot.client = message.client
        if message.slot.closed or not self.is_attached:
            _close_in_background([message.client])

    @on(SlotProgress)
    def _on_progress(self, message: SlotProgress) -> None:
        message.slot.progress = progress_text(message.progress)
        if self.round is None:
            self._show_status()

    @on(SlotReady)
    def _on_ready(self, message: SlotReady) -> None:
        message.slot.ready = message.ready
        if self.round is None or self.round.voted:
            self._show_status()

    @on(SlotFailed)
    def _on_failed(self, message: SlotFailed) -> None:
        message.slot.error = message.error
        name = next((c.name for c in self.contenders if c.slot is message.slot), message.slot.choice.label)
        self.notify(
            f"{name}: {message.error}", title="Could not load a model", severity="error", markup=False
        )
        if self.round is None or self.round.voted:
            self._show_status()

    @work(thread=True, exit_on_error=False, group="arena-prompts")
    def _load_prompts(self) -> None:
        from engine.eval.arena import prompt_set

        try:
            self.post_message(PromptsLoaded(prompt_set()))
        except Exception as exc:  # the held-out openings could not be built: the general set still works
            from engine.eval.arena import prompt_set as general

            self.post_message(PromptsLoaded(general(held_out=False), error_text(exc)))

    @on(PromptsLoaded)
    def _on_prompts(self, message: PromptsLoaded) -> None:
        self.prompts = message.prompts
        if message.error:
            self.notify(
                f"Only the general prompts: {message.error}",
                title="Prompt set",
                severity="warning",
                markup=False,
            )

    # ------------------------------------------------------------------------ a battle
    def busy(self) -> bool:
        """A battle is open: answers streaming, or waiting for the vote."""
        return self.round is not None and not self.round.voted

    @on(Input.Submitted, "#arena-input")
    async def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if text:
            await self.start_battle(text)

    async def action_draw_prompt(self) -> None:
        if self.busy():
            self.notify("Vote first (1, 2, 3 or 4), or esc to drop this battle.", severity="warning")
            return
        if not self.prompts:
            self.notify("The prompt set is still loading.", severity="warning")
            return
        from engine.eval.arena import draw_prompt

        await self.start_battle(draw_prompt(self.prompts, self.rng).text)

    async def start_battle(self, prompt: str) -> bool:
        """Send ``prompt`` to two ready models picked at random, in random order; False if not now."""
        if self.busy():
            self.notify("Vote first (1, 2, 3 or 4), or esc to drop this battle.", severity="warning")
            return False
        ready = [c for c in self.contenders if c.slot.ready is not None and not c.slot.error]
        if len(ready) < 2:
            loading = any(c.slot.ready is None and not c.slot.error for c in self.contenders)
            self.notify(
                "The models are still loading."
                if loading
                else "Fewer than two models loaded: nothing to compare.",
                severity="warning",
            )
            return False
        pair = self.rng.sample(ready, 2)  # the order is random too: pair[0] is A
        sampling = self.sampling.fields()
        if sampling.get("seed") is None:
            sampling["seed"] = self.rng.randrange(2**31)
        sampling["arena_seed"] = self.seed
        box = self.query_one("#arena-input", Input)
        box.value = ""
        box.disabled = True
        sides = []
        for label, contender in zip(SIDES, pair, strict=True):
            column = self.column(label)
            await column.clear()
            self._set_title(label, label)
            sides.append(Side(label, contender, column))
        self.round = Round(prompt, sides, sampling, time.time())
        self.query_one("#arena-prompt", Static).update(
            Content.assemble(("Prompt: ", "bold"), literal(prompt))
        )
        self._show_status(
            Content.styled("answering… (votes once both answers end; esc drops the battle)", "$text-muted")
        )
        for side in sides:
            side.answer = await side.column.add_answer()
            await side.answer.finish(answer_line(None))
            self._generate(side, self._fields(side.contender, prompt, sampling))
        self.query_one("#arena-col-a .column-log").focus()
        return True

    def _fields(self, contender: Contender, prompt: str, sampling: dict[str, Any]) -> dict[str, Any]:
        fields = {k: v for k, v in sampling.items() if k != "arena_seed"}
        ready = contender.slot.ready
        if ready is not None and ready.chat:
            fields.update(messages=[protocol.Message("user", prompt)], adapter=contender.choice.adapter)
        else:  # a plain continuation model: the prompt is the text to continue
            fields.update(prompt=prompt, adapter=contender.choice.adapter)
        return fields

    @work(thread=True, exit_on_error=False, group="arena-generate")
    def _generate(self, side: Side, fields: dict[str, Any]) -> None:
        stream_answer(self, side, side.job, side.contender.slot.client, fields)

    def _current(self, side: Side) -> bool:
        return self.round is not None and side in self.round.sides

    @on(AnswerDelta)
    async def _on_delta(self, message: AnswerDelta) -> None:
        side: Side = message.target
        if self._current(side) and side.answer is not None and not side.ended:
            side.text += message.text
            await side.answer.write(message.text)

    @on(AnswerDone)
    async def _on_done(self, message: AnswerDone) -> None:
        side: Side = message.target
        if not self._current(side):
            return
        side.done = message.done
        side.text = message.done.text
        if side.answer is not None:
            await side.answer.finish(answer_line(message.done), message.done.text)
        self._after_answer()

    @on(AnswerFailed)
    async def _on_side_failed(self, message: AnswerFailed) -> None:
        side: Side = message.target
        if not self._current(side):
            return
        side.error = message.error
        if side.answer is not None:
            await side.answer.finish(answer_line(None, message.error))
        self.notify(message.error, title=f"{side.label}: no answer", severity="error", markup=False)
        self._after_answer()

    def _after_answer(self) -> None:
        battle = self.round
        if battle is None or not all(s.ended for s in battle.sides):
            return
        if any(s.error for s in battle.sides):
            self.notify("An answer failed: this battle is dropped. Send another prompt.", severity="warning")
            self._end_round(dropped=True)
            return
        if any(s.done is not None and s.done.finish_reason == "cancelled" for s in battle.sides):
            self._end_round(dropped=True)
            return
        self._show_status(
            Content.assemble(("Vote: ", "bold"), "1 A better · 2 B better · 3 tie · 4 both bad")
        )

    def _end_round(self, dropped: bool) -> None:
        box = self.query_one("#arena-input", Input)
        box.disabled = False
        box.focus()
        if dropped:
            self.round = None
            self._show_status("battle dropped (not stored) · send another prompt")

    # ------------------------------------------------------------------------ voting
    def action_vote(self, winner: str) -> None:
        from engine.eval.arena import WINNERS, Battle, append_battle

        battle = self.round
        if battle is None or battle.voted:
            self.notify("No battle to vote on: send a prompt first.", severity="warning")
            return
        if not all(s.done is not None for s in battle.sides):
            self.notify("Wait for both answers to finish before voting.", severity="warning")
            return
        if winner not in WINNERS:
            return
        a, b = battle.sides
        record = Battle(
            model_a=a.contender.name,
            model_b=b.contender.name,
            winner=winner,
            tstamp=time.time(),
            prompt=battle.prompt,
            answer_a=a.text,
            answer_b=b.text,
            checkpoint_a=_checkpoint(a.contender),
            checkpoint_b=_checkpoint(b.contender),
            sampling=battle.sampling,
        )
        try:
            append_battle(None, record, path=self.battles_file)
        except OSError as exc:
            self.notify(f"Could not store the battle: {exc}", severity="error", markup=False)
            return
        battle.voted = winner
        self.last_battle = record
        self.rounds += 1
        for side in battle.sides:
            self._set_title(side.label, f"{side.label} · {side.contender.name}")
        self._show_status(
            Content.assemble(
                ("You voted ", ""),
                (VOTE_TEXT[winner], "bold"),
                f": A was {literal(a.contender.name)}, B was {literal(b.contender.name)}. ",
                ("Stored; the ratings update.", "$text-muted"),
            )
        )
        self._end_round(dropped=False)
        self._fit_ratings()

    @work(thread=True, exclusive=True, exit_on_error=False, group="arena-ratings")
    def _fit_ratings(self) -> None:
        from engine.eval.arena import battles_path, fit_ratings, read_battles

        try:
            battles = read_battles(self.battles_file or battles_path())
            self.post_message(RatingsFitted(fit_ratings(battles) if battles else None))
        except Exception as exc:
            self.post_message(RatingsFitted(None, error_text(exc)))

    @on(RatingsFitted)
    def _on_ratings(self, message: RatingsFitted) -> None:
        if message.error:
            self.notify(message.error, title="Ratings", severity="error", markup=False)
            return
        self.ratings = message.ratings
        self.ratings_fits += 1
        names = [c.name for c in self.contenders]
        self.query_one("#arena-ratings", Static).update(ratings_content(self.ratings, names))
        battle = self.round
        if battle is not None and battle.voted and self.ratings is not None:
            shown = []
            for side in battle.sides:
                r = self.ratings.ratings.get(side.contender.name)
                if r is not None:
                    shown.append(f"{side.contender.name} {r.rating:.0f}")
            status = self.query_one("#arena-status", Static)
            status.update(
                Content.assemble(
                    ("You voted ", ""),
                    (VOTE_TEXT[battle.voted], "bold"),
                    f": A was {literal(battle.sides[0].contender.name)}, "
                    f"B was {literal(battle.sides[1].contender.name)}. ",
                    ("Ratings now: " + literal(" · ".join(shown)), "$text-muted"),
                )
            )

    # ------------------------------------------------------------------------ other actions
    def action_stop(self) -> None:
        battle = self.round
        if battle is not None and not battle.voted and not all(s.ended for s in battle.sides):
            self._cancel_answers()
            return
        if battle is not None and not battle.voted:  # both answered, no vote: drop it
            self._end_round(dropped=True)
            return
        self.app.pop_screen()

    def action_toggle_ratings(self) -> None:
        self.query_one("#arena-side").toggle_class("-hidden")

    # ------------------------------------------------------------------------ leaving
    def _cancel_answers(self) -> None:
        if self.round is not None:
            for side in self.round.sides:
                side.job.cancel()

    def on_unmount(self) -> None:
        self._cancel_answers()
        close_slots(self.slots)

    def close_now(self) -> None:
        """Close every worker before returning (tests)."""
        self._cancel_answers()
        close_slots(self.slots, wait=True)


def _checkpoint(contender: Contender) -> str | None:
    ready = contender.slot.ready
    return (ready.checkpoint if ready is not None else None) or contender.choice.checkpoint
