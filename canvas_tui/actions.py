"""The one registry of console actions: it feeds key bindings, the help screen and the palette.

Each :class:`CanvasAction` has a stable ``id`` (what ``keymap`` in the settings remaps), its
default key(s), the Textual action it runs, and the scope it belongs to (``app`` for every
screen, else a screen's name). Screens take their ``BINDINGS`` from :func:`bindings`; the help
screen lists :data:`ACTIONS`; the command palette offers every action of the current screen and
of the app. Torch-free; imports only ``textual.binding``.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType

SCOPES = {
    "app": "Everywhere",
    "runs": "Runs",
    "dashboard": "Run dashboard",
    "new_run": "New run",
    "chat": "Chat",
    "arena": "Arena",
    "evaluation": "Evaluation",
    "eval_samples": "Eval samples",
    "compare": "Compare runs",
}


@dataclass(frozen=True)
class CanvasAction:
    id: str
    key: str
    action: str
    title: str
    help: str
    scope: str
    show: bool = True
    priority: bool = False
    key_display: str | None = None


ACTIONS: tuple[CanvasAction, ...] = (
    # -- everywhere
    # ``q`` is not a priority binding, so it types a q into a focused input; ctrl+q (Textual's own
    # priority binding) quits from anywhere.
    CanvasAction(
        "app.quit",
        "q",
        "quit",
        "Quit",
        "Leave the console; runs keep going (open it again to re-attach). ctrl+q works anywhere",
        "app",
    ),
    CanvasAction("app.help", "question_mark,f1", "help", "Help", "Show every key", "app", key_display="?"),
    CanvasAction("app.runs", "R", "go_runs", "Runs", "Go to the runs list", "app", show=False),
    CanvasAction("app.new_run", "N", "new_run", "New run", "Open the New-run form", "app", show=False),
    CanvasAction(
        "app.evaluation",
        "E",
        "evaluation",
        "Evaluation",
        "Evaluation: compare evaluated models, arena ratings, samples; launch an evaluation",
        "app",
        show=False,
    ),
    CanvasAction(
        "app.chat", "C", "chat", "Chat", "Chat with a model: pick runs, folders or Hub ids", "app", show=False
    ),
    # -- runs list
    CanvasAction(
        "runs.open",
        "enter,o",
        "open_run",
        "Open",
        "Open the selected run's dashboard",
        "runs",
        key_display="⏎",
    ),
    CanvasAction("runs.new", "n", "new_run", "New", "Start a new run", "runs"),
    CanvasAction(
        "runs.stop", "s", "stop_run", "Stop", "Stop the selected run gracefully (it checkpoints)", "runs"
    ),
    CanvasAction(
        "runs.resume",
        "r",
        "resume_run",
        "Resume",
        "Resume the selected stopped/crashed/failed run from its last checkpoint",
        "runs",
    ),
    CanvasAction(
        "runs.checkpoint",
        "c",
        "checkpoint_run",
        "Checkpoint",
        "Ask the selected running run to checkpoint now",
        "runs",
        show=False,
    ),
    CanvasAction("runs.talk", "t", "talk", "Talk", "Chat with the selected run's model", "runs"),
    CanvasAction(
        "runs.delete", "d,delete", "delete_run", "Delete", "Delete the selected run (asks first)", "runs"
    ),
    CanvasAction(
        "runs.filter",
        "slash",
        "filter",
        "Filter",
        "Filter runs by id, name, kind or status",
        "runs",
        key_display="/",
    ),
    CanvasAction(
        "runs.clear_filter", "escape", "clear_filter", "Clear filter", "Clear the filter", "runs", show=False
    ),
    CanvasAction(
        "runs.sort_next",
        "greater_than_sign",
        "sort_next",
        "Sort",
        "Sort by the next column (or click a header; again to reverse)",
        "runs",
        show=False,
        key_display=">",
    ),
    CanvasAction(
        "runs.sort_previous",
        "less_than_sign",
        "sort_previous",
        "Sort by previous column",
        "Sort by the previous column",
        "runs",
        show=False,
        key_display="<",
    ),
    CanvasAction(
        "runs.sort_reverse", "I", "sort_reverse", "Reverse sort", "Reverse the sort order", "runs", show=False
    ),
    CanvasAction(
        "runs.notes", "e", "edit_notes", "Notes", "Edit the selected run's notes and tags", "runs", show=False
    ),
    CanvasAction("runs.down", "j", "cursor_down", "Down", "Move to the next run", "runs", show=False),
    CanvasAction("runs.up", "k", "cursor_up", "Up", "Move to the previous run", "runs", show=False),
    CanvasAction(
        "runs.top", "g,home", "cursor_top", "First run", "Move to the first run", "runs", show=False
    ),
    CanvasAction(
        "runs.bottom", "G,end", "cursor_bottom", "Last run", "Move to the last run", "runs", show=False
    ),
    CanvasAction(
        "runs.mark",
        "space",
        "toggle_mark",
        "Mark",
        "Mark or unmark the selected run for the comparison",
        "runs",
        key_display="space",
    ),
    CanvasAction(
        "runs.compare",
        "v",
        "compare",
        "Compare",
        "Compare the marked runs (at least two): loss curves overlaid, configs diffed",
        "runs",
    ),
    # -- dashboard
    CanvasAction(
        "dashboard.back",
        "escape,backspace",
        "back",
        "Back",
        "Back to the runs list",
        "dashboard",
        key_display="esc",
    ),
    CanvasAction(
        "dashboard.stop", "s", "stop_run", "Stop", "Stop this run gracefully (it checkpoints)", "dashboard"
    ),
    CanvasAction(
        "dashboard.checkpoint",
        "c",
        "checkpoint_run",
        "Checkpoint now",
        "Write a checkpoint at the next step and go on",
        "dashboard",
    ),
    CanvasAction(
        "dashboard.resume",
        "r",
        "resume_run",
        "Resume",
        "Resume this run from its last checkpoint",
        "dashboard",
    ),
    CanvasAction(
        "dashboard.log_scale",
        "l",
        "toggle_log_scale",
        "Log scale",
        "Toggle a logarithmic loss axis",
        "dashboard",
    ),
    CanvasAction(
        "dashboard.smoothing",
        "m",
        "cycle_smoothing",
        "Smoothing",
        "Cycle loss smoothing (0, 0.6, 0.9, 0.99)",
        "dashboard",
    ),
    CanvasAction(
        "dashboard.metric",
        "p",
        "next_metric",
        "Metric",
        "Show the next metric in the side plot: learning rate, grad norm, MFU, step time, peak memory, "
        "tokens seen, elapsed time",
        "dashboard",
    ),
    CanvasAction("dashboard.talk", "t", "talk", "Talk", "Chat with this run's model", "dashboard"),
    CanvasAction(
        "dashboard.follow",
        "f",
        "toggle_follow",
        "Follow log",
        "Follow the log tail / stop following",
        "dashboard",
        show=False,
    ),
    # -- compare runs
    CanvasAction(
        "compare.x_axis",
        "x",
        "cycle_x_axis",
        "X axis",
        "Plot against step, tokens seen or wall time (cycles)",
        "compare",
    ),
    CanvasAction(
        "compare.differences",
        "d",
        "toggle_differences",
        "Only differences",
        "Show only the config keys that differ / every key",
        "compare",
    ),
    CanvasAction(
        "compare.back", "escape", "back", "Back", "Back to the runs list", "compare", key_display="esc"
    ),
    # -- new run form
    CanvasAction(
        "new_run.launch", "ctrl+l", "launch", "Launch", "Validate and launch the run detached", "new_run"
    ),
    CanvasAction(
        "new_run.back", "escape", "back", "Cancel", "Back without launching", "new_run", key_display="esc"
    ),
    # -- chat (letters would type into the message box, so most keys are ctrl+…)
    CanvasAction("chat.send", "ctrl+s", "send", "Send", "Send the message to every model shown", "chat"),
    CanvasAction(
        "chat.stop",
        "escape",
        "stop",
        "Stop / back",
        "Stop the answers being generated (the partial text stays); when idle, go back",
        "chat",
        key_display="esc",
    ),
    CanvasAction(
        "chat.models",
        "ctrl+o",
        "pick_models",
        "Models",
        "Pick the model(s): up to three side by side",
        "chat",
    ),
    CanvasAction(
        "chat.settings", "f2", "toggle_settings", "Settings", "Show/hide system prompt and sampling", "chat"
    ),
    CanvasAction(
        "chat.prompt", "ctrl+r", "show_prompt", "Prompt", "Show the rendered prompt the model sees", "chat"
    ),
    CanvasAction(
        "chat.copy",
        "y",
        "copy_answer",
        "Copy answer",
        "Copy the last answer (OSC 52: works over SSH); with the message box unfocused",
        "chat",
    ),
    CanvasAction(
        "chat.new", "ctrl+n", "new_chat", "New chat", "Start a new conversation, same models", "chat"
    ),
    CanvasAction(
        "chat.saved",
        "ctrl+l",
        "saved_chats",
        "Saved chats",
        "Reopen a saved conversation",
        "chat",
        show=False,
    ),
    CanvasAction(
        "chat.next",
        "ctrl+t",
        "next_column",
        "Next model",
        "Next tab (side by side on narrow screens)",
        "chat",
        show=False,
    ),
    # -- evaluation
    CanvasAction(
        "evaluation.samples",
        "enter,b",
        "open_samples",
        "Samples",
        "Browse the selected evaluation's samples: prompt, reference, every model's output",
        "evaluation",
        key_display="⏎",
    ),
    CanvasAction(
        "evaluation.sort",
        "s",
        "sort_next",
        "Sort",
        "Sort by the next metric column, best first",
        "evaluation",
    ),
    CanvasAction(
        "evaluation.reverse", "r", "reverse_sort", "Reverse", "Reverse the sort order", "evaluation"
    ),
    CanvasAction(
        "evaluation.new",
        "n",
        "new_eval",
        "New eval",
        "Evaluate models: pick runs, data, samples",
        "evaluation",
    ),
    CanvasAction(
        "evaluation.arena",
        "a",
        "arena",
        "Arena",
        "Blind side-by-side votes on the selected models",
        "evaluation",
    ),
    CanvasAction(
        "evaluation.back",
        "escape",
        "back",
        "Back",
        "Back to the previous screen",
        "evaluation",
        key_display="esc",
    ),
    CanvasAction("eval_samples.model_a", "1", "cycle_a", "Model A", "Next model as A", "eval_samples"),
    CanvasAction("eval_samples.model_b", "2", "cycle_b", "Model B", "Next model as B", "eval_samples"),
    CanvasAction(
        "eval_samples.metric", "m", "cycle_metric", "Metric", "Next per-sample metric", "eval_samples"
    ),
    CanvasAction(
        "eval_samples.sort",
        "s",
        "cycle_sort",
        "Sort",
        "Sort by B - A (largest first, smallest first) or by index",
        "eval_samples",
    ),
    CanvasAction(
        "eval_samples.back",
        "escape",
        "back",
        "Back",
        "Back to the comparison",
        "eval_samples",
        key_display="esc",
    ),
    # -- arena (the prompt box takes letters, so votes are digits: the box is locked while voting)
    CanvasAction("arena.vote_a", "1", "vote('model_a')", "A better", "Vote: answer A is better", "arena"),
    CanvasAction("arena.vote_b", "2", "vote('model_b')", "B better", "Vote: answer B is better", "arena"),
    CanvasAction("arena.tie", "3", "vote('tie')", "Tie", "Vote: both answers are as good", "arena"),
    CanvasAction(
        "arena.both_bad", "4", "vote('tie (bothbad)')", "Both bad", "Vote: both answers are bad", "arena"
    ),
    CanvasAction(
        "arena.draw",
        "ctrl+n",
        "draw_prompt",
        "Draw prompt",
        "Send a prompt from the prompt set (held-out conversation openings, general set)",
        "arena",
    ),
    CanvasAction(
        "arena.stop",
        "escape",
        "stop",
        "Stop / back",
        "Stop the answers (the battle is dropped); when idle, go back",
        "arena",
        key_display="esc",
    ),
    CanvasAction("arena.ratings", "f2", "toggle_ratings", "Ratings", "Show/hide the ratings panel", "arena"),
)


def bindings(scope: str) -> list[BindingType]:
    """The Textual bindings of one scope, each with the action's id and tooltip."""
    return [
        Binding(
            a.key,
            a.action,
            a.title,
            show=a.show,
            priority=a.priority,
            tooltip=a.help,
            id=a.id,
            key_display=a.key_display,
        )
        for a in ACTIONS
        if a.scope == scope
    ]


#: The scope of the screens that do not name theirs in a ``SCOPE`` class attribute.
SCREEN_SCOPES = {"RunsScreen": "runs", "DashboardScreen": "dashboard", "NewRunScreen": "new_run"}


def screen_scope(screen: object) -> str:
    """The action scope of a screen: its ``SCOPE``, else by its class name ("" when it has none)."""
    return getattr(screen, "SCOPE", None) or SCREEN_SCOPES.get(type(screen).__name__, "")


def for_scope(*scopes: str) -> list[CanvasAction]:
    return [a for a in ACTIONS if a.scope in scopes]


def display_key(action: CanvasAction, keymap: dict[str, str] | None = None) -> str:
    key = (keymap or {}).get(action.id, action.key)
    if action.key_display and action.id not in (keymap or {}):
        return action.key_display
    return ", ".join(k.replace("question_mark", "?").replace("slash", "/") for k in key.split(","))
