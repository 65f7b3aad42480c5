"""The blind arena's data: battles on disk, Bradley–Terry ratings, and the prompts. Torch-free.

**Battles** are appended to ``<home>/arena/battles.jsonl``, one JSON object per line, with Chatbot
Arena's fields (``model_a``, ``model_b``, ``winner`` one of ``model_a`` / ``model_b`` / ``tie`` /
``tie (bothbad)``, ``tstamp``) plus the prompt, both answers, both checkpoints and the sampling.
``model_a`` is the model shown as "A". Each line is written with one ``write`` to a file opened
``O_APPEND`` (owner-only, 0600, in a 0700 folder), so two consoles voting at once never tear each
other's lines; a line torn by a crash is skipped when reading, and counted.

**Ratings** are Bradley–Terry strengths fitted by maximum likelihood, the way Chatbot Arena does it
(FastChat ``fastchat/serve/monitor/elo_analysis.py``, ``compute_elo_mle_with_tie``): a logistic
regression without intercept on a design matrix with ``+ln(base)`` in model A's column and
``-ln(base)`` in model B's, every battle duplicated so that a tie is one win for each side (half a
win), ratings ``scale * coef + init`` (scale 400, base 10, init 1000), then shifted so that one model
(the anchor) sits at ``init``. FastChat fits it with scikit-learn; here the same likelihood is
maximised with Newton's method in NumPy. The fit is the *unpenalised* maximum-likelihood estimate
(what FastChat's ``LogisticRegression(penalty=None)`` variant and its current L-BFGS fit compute;
its older ``LogisticRegression(fit_intercept=False)`` adds scikit-learn's default L2 penalty,
``C=1``, which moves ratings by a little when battles are few).

That estimate exists only when every split of the models into two groups has a win (or tie) each
way across it: the graph "i won or tied against j" is strongly connected. Before then (one battle,
or a model that never lost) the likelihood keeps rising as ratings move apart; the fit then uses
scikit-learn's default penalty (L2, ``C=1`` on the duplicated rows) so that ratings stay finite,
and says so (:attr:`Ratings.regularised`). Bootstrap rounds follow the same rule.

**Intervals** come from ``n_bootstrap`` (1,000) seeded rounds that resample the battles with
replacement (a multinomial over the distinct outcomes, as FastChat's
``get_bootstrap_result_elo_mle_with_tie``), the 2.5th and 97.5th percentiles of each model's
rating. **Win fractions**: how often the row model beat the column model, a tie counting half.

**Prompts**: the openings of the embedded conversations that a fine-tune with the default settings
holds out (``val_fraction`` 0.05, seed 1337), plus a small general set (:data:`GENERAL_PROMPTS`).
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.locations import canvas_home, ensure_private_dir

#: Chatbot Arena's four verdicts, in the order of the vote keys (A better, B better, tie, both bad).
WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")

SCALE = 400.0
BASE = 10.0
INIT_RATING = 1000.0
N_BOOTSTRAP = 1000


class ArenaError(ValueError):
    """Bad input to the arena (``field`` names the flag or field to fix)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


# ------------------------------------------------------------------------------------------ battles
@dataclass(frozen=True)
class Battle:
    """One vote. ``model_a`` was shown as "A", ``model_b`` as "B"; ``winner`` is one of :data:`WINNERS`."""

    model_a: str
    model_b: str
    winner: str
    tstamp: float
    prompt: str = ""
    answer_a: str = ""
    answer_b: str = ""
    checkpoint_a: str | None = None
    checkpoint_b: str | None = None
    sampling: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.winner not in WINNERS:
            raise ArenaError("winner", f"winner {self.winner!r} is not one of {', '.join(WINNERS)}.")
        if not self.model_a or not self.model_b:
            raise ArenaError("model_a", "a battle needs two model names (model_a and model_b).")
        if self.model_a == self.model_b:
            raise ArenaError("model_b", f"a battle needs two different models (both are {self.model_a!r}).")

    def to_json(self) -> dict[str, Any]:
        return {
            "model_a": self.model_a,
            "model_b": self.model_b,
            "winner": self.winner,
            "tstamp": self.tstamp,
            "prompt": self.prompt,
            "answer_a": self.answer_a,
            "answer_b": self.answer_b,
            "checkpoint_a": self.checkpoint_a,
            "checkpoint_b": self.checkpoint_b,
            "sampling": dict(self.sampling),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Battle:
        """A battle from a JSON object; ArenaError/KeyError/TypeError/ValueError when it is not one."""
        tstamp = data["tstamp"]
        if isinstance(tstamp, bool) or not isinstance(tstamp, (int, float)):
            raise ArenaError("tstamp", "tstamp must be a number (seconds since the epoch).")
        sampling = data.get("sampling") or {}
        if not isinstance(sampling, dict):
            raise ArenaError("sampling", "sampling must be an object.")
        return cls(
            model_a=_text(data["model_a"], "model_a"),
            model_b=_text(data["model_b"], "model_b"),
            winner=_text(data["winner"], "winner"),
            tstamp=float(tstamp),
            prompt=_text(data.get("prompt") or "", "prompt"),
            answer_a=_text(data.get("answer_a") or "", "answer_a"),
            answer_b=_text(data.get("answer_b") or "", "answer_b"),
            checkpoint_a=_optional_text(data.get("checkpoint_a"), "checkpoint_a"),
            checkpoint_b=_optional_text(data.get("checkpoint_b"), "checkpoint_b"),
            sampling=sampling,
        )


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ArenaError(name, f"{name} must be a string.")
    return value


def _optional_text(value: Any, name: str) -> str | None:
    return None if value is None else _text(value, name)


class BattleList(list):
    """The battles read from a file, in file order; ``skipped`` counts lines that were not battles
    (torn by a crash mid-write, or edited by hand)."""

    def __init__(self, battles: Iterable[Battle] = (), skipped: int = 0) -> None:
        super().__init__(battles)
        self.skipped = skipped


def arena_dir(home: Path | None = None) -> Path:
    """``<home>/arena``: ``home`` given, else ``CANVAS_HOME``, else beside the run store in the
    platform's user data directory (where :func:`engine.locations.runs_dir` keeps runs)."""
    if home is not None:
        return Path(home).expanduser() / "arena"
    env_home = canvas_home()
    if env_home is not None:
        return env_home / "arena"
    from engine.locations import runs_dir

    return runs_dir().parent / "arena"


def battles_path(home: Path | None = None) -> Path:
    return arena_dir(home) / "battles.jsonl"


def append_battle(home: Path | None, battle: Battle, *, path: Path | None = None) -> Path:
    """Append one battle as one JSON line (to ``path``, default :func:`battles_path`); returns the file.

    The line goes out in a single ``os.write`` on an ``O_APPEND`` descriptor, so concurrent appends
    from several consoles interleave whole lines. A last line left without its newline by a crash
    is closed first, so the new battle is not glued to it."""
    target = Path(path) if path is not None else battles_path(home)
    ensure_private_dir(target.parent)
    line = (json.dumps(battle.to_json(), ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and not _ends_with_newline(target, size):
            line = b"\n" + line
        written = os.write(fd, line)
        while written < len(line):  # only on a full disk or a signal: finish the line
            written += os.write(fd, line[written:])
    finally:
        os.close(fd)
    return target


def _ends_with_newline(path: Path, size: int) -> bool:
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1) == b"\n"


def read_battles(path: Path | None = None) -> BattleList:
    """Every battle of ``path`` (default :func:`battles_path`); a missing file is no battles. Lines
    that are not a whole battle are skipped and counted in ``skipped``."""
    target = Path(path) if path is not None else battles_path()
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        return BattleList()
    battles, skipped = [], 0
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise TypeError("not an object")
            battles.append(Battle.from_json(data))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            skipped += 1
    return BattleList(battles, skipped)


# ------------------------------------------------------------------------------------------ ratings
@dataclass(frozen=True)
class ModelRating:
    rating: float
    ci95: tuple[float, float] | None  # None without bootstrap rounds
    battles: int


@dataclass
class Ratings:
    """Fitted ratings, best first (:attr:`models`), with intervals, win fractions and counts."""

    models: list[str]
    ratings: dict[str, ModelRating]
    win_fraction: dict[str, dict[str, float | None]]
    battles: dict[str, dict[str, int]]
    anchor: str
    n_battles: int
    regularised: bool = False
    n_bootstrap: int = N_BOOTSTRAP
    seed: int = 0
    scale: float = SCALE
    base: float = BASE
    init: float = INIT_RATING

    def to_json(self) -> dict[str, Any]:
        return {
            "ratings": {
                m: {
                    "rating": self.ratings[m].rating,
                    "ci95": _ci_json(self.ratings[m].ci95),
                    "battles": self.ratings[m].battles,
                }
                for m in self.models
            },
            "win_fraction": {a: dict(row) for a, row in self.win_fraction.items()},
            "battles": {a: dict(row) for a, row in self.battles.items()},
            "settings": {
                "anchor": self.anchor,
                "scale": self.scale,
                "base": self.base,
                "init": self.init,
                "n_bootstrap": self.n_bootstrap,
                "seed": self.seed,
                "n_battles": self.n_battles,
                "regularised": self.regularised,
            },
        }


def _ci_json(ci: tuple[float, float] | None) -> list[float] | None:
    """An interval for JSON: None without one (no bootstrap, or no round that held the model)."""
    if ci is None or any(math.isnan(x) for x in ci):
        return None
    return [ci[0], ci[1]]


def _outcome(winner: str) -> float:
    """Model A's score in a battle: 1 for a win, 0 for a loss, a half for either kind of tie."""
    return {"model_a": 1.0, "model_b": 0.0}.get(winner, 0.5)


def fit_ratings(
    battles: Sequence[Battle],
    *,
    scale: float = SCALE,
    base: float = BASE,
    init: float = INIT_RATING,
    anchor: str | None = None,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
) -> Ratings:
    """Bradley–Terry ratings of every model in ``battles`` (see the module docstring).

    ``anchor`` (default: the first model name in sorted order) is pinned at ``init``; ArenaError
    names ``anchor`` when it fought no battle. ``n_bootstrap=0`` skips the intervals."""
    if not battles:
        raise ArenaError("battles", "no battles to rate yet: vote in `canvas arena MODEL_A MODEL_B` first.")
    if n_bootstrap < 0:
        raise ArenaError("n_bootstrap", f"n_bootstrap must be 0 or more, not {n_bootstrap}.")
    models = sorted({b.model_a for b in battles} | {b.model_b for b in battles})
    if anchor is None:
        anchor = models[0]
    elif anchor not in models:
        raise ArenaError(
            "anchor",
            f"anchor {anchor!r} fought no battle; the models are {', '.join(models)}. "
            "Fix: name one of them (or leave --anchor out for the first alphabetically).",
        )
    index = {m: i for i, m in enumerate(models)}
    k = len(models)
    a_idx = np.array([index[b.model_a] for b in battles], dtype=np.int64)
    b_idx = np.array([index[b.model_b] for b in battles], dtype=np.int64)
    score = np.array([_outcome(b.winner) for b in battles], dtype=np.float64)
    alpha = math.log(base)
    anchor_i = index[anchor]

    # Distinct (a, b, score) outcomes and how often each happened: the fit and the bootstrap only
    # need these counts (FastChat's preprocess_battles_to_arrays does the same).
    outcome_keys = np.stack([a_idx, b_idx, (score * 2).astype(np.int64)], axis=1)
    unique, counts = np.unique(outcome_keys, axis=0, return_counts=True)
    u_a, u_b, u_score = unique[:, 0], unique[:, 1], unique[:, 2] / 2.0

    def wins_for(weights: np.ndarray) -> np.ndarray:
        """(R, k, k): W[r, i, j] = i's wins over j in round r, a tie counting half to each."""
        rounds = weights.shape[0]
        wins = np.zeros((rounds, k, k))
        np.add.at(wins, (slice(None), u_a, u_b), weights * u_score)
        np.add.at(wins, (slice(None), u_b, u_a), weights * (1.0 - u_score))
        return wins

    theta, regularised = _fit_theta(wins_for(counts[None, :].astype(np.float64)), anchor_i, alpha)
    point = scale * theta[0] / alpha + init
    ci: dict[str, tuple[float, float]] = {}
    if n_bootstrap:
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(len(battles), counts / counts.sum(), size=n_bootstrap).astype(np.float64)
        boot_theta, _ = _fit_theta(wins_for(draws), anchor_i, alpha)
        boot = scale * boot_theta / alpha + init
        with np.errstate(all="ignore"):
            lo = np.nanpercentile(boot, 2.5, axis=0)
            hi = np.nanpercentile(boot, 97.5, axis=0)
        ci = {m: (float(lo[i]), float(hi[i])) for m, i in index.items()}

    pair_n = np.zeros((k, k), dtype=np.int64)
    np.add.at(pair_n, (a_idx, b_idx), 1)
    pair_n = pair_n + pair_n.T
    full = wins_for(counts[None, :].astype(np.float64))[0]
    win_fraction: dict[str, dict[str, float | None]] = {}
    counts_out: dict[str, dict[str, int]] = {}
    for m, i in index.items():
        win_fraction[m] = {
            o: (float(full[i, j] / pair_n[i, j]) if pair_n[i, j] else None)
            for o, j in index.items()
            if o != m
        }
        counts_out[m] = {o: int(pair_n[i, j]) for o, j in index.items() if o != m}
    per_model = pair_n.sum(axis=1)
    ratings = {m: ModelRating(float(point[i]), ci.get(m), int(per_model[i])) for m, i in index.items()}
    order = sorted(models, key=lambda m: (-ratings[m].rating, m))
    return Ratings(
        models=order,
        ratings=ratings,
        win_fraction={m: win_fraction[m] for m in order},
        battles={m: counts_out[m] for m in order},
        anchor=anchor,
        n_battles=len(battles),
        regularised=bool(regularised[0]),
        n_bootstrap=n_bootstrap,
        seed=seed,
        scale=scale,
        base=base,
        init=init,
    )


def _strongly_connected(beats: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(R,) whether the graph "i won or tied against j" is strongly connected over the models present."""
    k = beats.shape[1]
    reach = beats | np.eye(k, dtype=bool)[None]
    for _ in range(max(1, math.ceil(math.log2(max(k, 2)))) + 1):
        reach = reach | (np.matmul(reach.astype(np.float64), reach.astype(np.float64)) > 0)
    pair_present = present[:, :, None] & present[:, None, :]
    return np.all(reach | ~pair_present, axis=(1, 2))


def _fit_theta(wins: np.ndarray, anchor: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood log-strengths (natural units) for each round of ``wins`` (R, k, k), with
    the anchor at 0; models absent from a round are NaN, and a round without its anchor is all NaN.

    Newton's method on the Bradley–Terry log-likelihood ``sum W_ij log sigmoid(t_i - t_j)``, all
    rounds at once. Rounds whose MLE does not exist (see :func:`_strongly_connected`) add
    scikit-learn's default L2 penalty, ``|coef|^2 / 2`` against the log-loss of the duplicated rows
    (``2 * NLL``), i.e. ``|t|^2 / (4 alpha^2)`` here. Returns (theta, regularised)."""
    rounds, k, _ = wins.shape
    games = wins + np.transpose(wins, (0, 2, 1))
    present = games.sum(axis=2) > 0
    regular = _strongly_connected(wins > 0, present)
    lam = np.where(regular, 0.0, 1.0 / (2.0 * alpha * alpha))  # 1/2 lam |t|^2 == |t|^2 / (4 alpha^2)
    # Parameters held at 0: models absent from the round, and the anchor when the fit is unpenalised.
    fixed = ~present
    fixed[:, anchor] |= regular
    fixed[~present[:, anchor]] = True  # no anchor, no reference: the round is dropped below
    free = ~fixed
    theta = np.zeros((rounds, k))
    eye = np.eye(k)[None]
    for _ in range(200):
        diff = theta[:, :, None] - theta[:, None, :]
        p = 1.0 / (1.0 + np.exp(-diff))
        grad = (games * p).sum(axis=2) - wins.sum(axis=2) + lam[:, None] * theta
        w = games * p * (1.0 - p)
        hess = -w + eye * w.sum(axis=2)[:, :, None] + lam[:, None, None] * eye
        # Fixed parameters: identity rows and columns, zero gradient, so they stay at 0.
        hess = np.where(free[:, :, None] & free[:, None, :], hess, eye * np.ones_like(hess))
        grad = np.where(free, grad, 0.0)
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        biggest = np.abs(step).max(axis=1, keepdims=True)
        step = step * np.minimum(1.0, 4.0 / np.maximum(biggest, 1e-300))  # no wild first steps
        theta = theta - step
        if float(np.abs(step).max(initial=0.0)) < 1e-12:
            break
    theta = theta - theta[:, anchor : anchor + 1]  # penalised rounds: shift the anchor to 0
    theta = np.where(present, theta, np.nan)
    theta[~present[:, anchor]] = np.nan
    return theta, ~regular


# ------------------------------------------------------------------------------------------ prompts
#: A small general set beside the held-out conversation openings: short, varied, no right answer.
GENERAL_PROMPTS = (
    "Write a haiku about the sea.",
    "Explain recursion to a ten-year-old.",
    "What is the difference between a list and a tuple in Python?",
    "Give three tips for writing clear error messages.",
    "Summarise the plot of a story about a lost key in two sentences.",
    "Write a short, friendly reply declining a meeting invitation.",
    "What does a hash table do, and why is lookup fast?",
    "Describe the colour blue to someone who cannot see.",
    "Write a Python function that reverses a string.",
    "Why is the sky blue?",
    "Suggest a name for a small bakery and explain it.",
    "What are the pros and cons of working from home?",
    "Explain what a unit test is and why it helps.",
    "Write the opening line of a mystery novel.",
    "How do I read a file line by line in Python?",
    "What is the difference between weather and climate?",
    "Give a one-paragraph explanation of how a neural network learns.",
    "Write a limerick about a cat who loves boxes.",
    "What should I pack for a weekend hiking trip?",
    "Explain the difference between `==` and `is` in Python.",
)


@dataclass(frozen=True)
class ArenaPrompt:
    text: str
    source: str  # "held-out" (an embedded conversation a default fine-tune never saw) or "general"


def held_out_openings(val_fraction: float | None = None, seed: int | None = None) -> list[str]:
    """The first user message of each embedded conversation that a fine-tune with these settings
    holds out (default: the fine-tune defaults), in order."""
    from engine.config.finetune import FinetuneConfig
    from engine.finetune.chat_data.split import split_conversations
    from engine.finetune.embedded_chat import embedded_conversations

    defaults = FinetuneConfig()
    _, held = split_conversations(
        embedded_conversations(),
        defaults.val_fraction if val_fraction is None else val_fraction,
        defaults.seed if seed is None else seed,
    )
    out = []
    for conv in held:
        first = next((m["content"] for m in conv if m.get("role") == "user"), "")
        if first.strip():
            out.append(first)
    return out


def prompt_set(*, held_out: bool = True) -> list[ArenaPrompt]:
    """The arena's prompts: held-out conversation openings, then :data:`GENERAL_PROMPTS`."""
    prompts = [ArenaPrompt(t, "held-out") for t in held_out_openings()] if held_out else []
    return prompts + [ArenaPrompt(t, "general") for t in GENERAL_PROMPTS]


def draw_prompt(prompts: Sequence[ArenaPrompt], rng: random.Random) -> ArenaPrompt:
    """One prompt: half the time from the general set, else from the held-out openings (so the
    twenty general prompts are not drowned by the held-out ones)."""
    if not prompts:
        raise ArenaError("prompts", "the prompt set is empty.")
    general = [p for p in prompts if p.source == "general"]
    held = [p for p in prompts if p.source != "general"]
    pool = general if (general and (not held or rng.random() < 0.5)) else held
    return rng.choice(pool)


# ------------------------------------------------------------------------------------------ display
def format_ratings(ratings: Ratings) -> str:
    """The ratings as a text table and the win-fraction matrix (row beat column, ties half)."""
    name_w = max(5, *(len(m) for m in ratings.models))
    lines = [f"{'model':<{name_w}}  {'rating':>7}  {'95% CI':>17}  {'battles':>7}"]
    for m in ratings.models:
        r = ratings.ratings[m]
        ci = f"[{r.ci95[0]:7.1f}, {r.ci95[1]:7.1f}]" if r.ci95 and not any(map(math.isnan, r.ci95)) else "—"
        mark = " (anchor)" if m == ratings.anchor else ""
        lines.append(f"{m:<{name_w}}  {r.rating:7.1f}  {ci:>17}  {r.battles:7d}{mark}")
    lines.append("")
    lines.append(
        f"{ratings.n_battles} battle{'' if ratings.n_battles == 1 else 's'}; Bradley–Terry maximum "
        f"likelihood (scale {ratings.scale:g}, base "
        f"{ratings.base:g}, ties half a win), {ratings.anchor} anchored at {ratings.init:g}; "
        + (
            f"95% CI from {ratings.n_bootstrap} bootstrap rounds (seed {ratings.seed})."
            if ratings.n_bootstrap
            else "no CI."
        )
    )
    if ratings.regularised:
        lines.append(
            "Note: no finite maximum-likelihood fit yet (some model has never lost, or never won, "
            "against the rest): ratings use scikit-learn's default L2 penalty (C=1), as FastChat's fit."
        )
    lines.append("")
    lines.append("Win fraction (row beat column, a tie counts half; battles in brackets):")
    cell = max(9, min(14, name_w))
    header = " " * name_w + "".join(f"  {m[:cell]:>{cell}}" for m in ratings.models)
    lines.append(header)
    for a in ratings.models:
        row = f"{a:<{name_w}}"
        for b in ratings.models:
            if a == b:
                text = "—"
            else:
                f = ratings.win_fraction[a][b]
                text = "·" if f is None else f"{f:.2f} ({ratings.battles[a][b]})"
            row += f"  {text:>{cell}}"
        lines.append(row)
    return "\n".join(lines)
