"""How much validation a fine-tune does by default: at most about a tenth of the training time.

A fine-tune of 20 steps once spent most of its 22 minutes in 10 validation passes of 20 batches
each. With ``eval_batches = 0`` (the fine-tune default, "automatic") the number of batches a pass
reads, and with ``eval_every = 0`` also the interval, are chosen from the run's own size so that

    passes x batches x (cost of a validation batch)  <=  EVAL_SHARE x steps x (cost of a step)

A validation batch is one forward pass of a micro-batch; a training step is ``grad_accum``
micro-batches of forward and backward (with gradient checkpointing about three forward passes
each, :data:`FORWARDS_PER_MICRO_STEP`). The rule is static (the same on a resume, so the step-0
figure and every later one read the same batches), and the log says what it chose and how to change
it. A value the user set is never changed.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The largest share of the training time validation takes by default.
EVAL_SHARE = 0.10
#: What one training micro-batch costs, in forward passes of the same batch (forward, backward
#: about two, the recomputation of gradient checkpointing one more; three errs towards validating less).
FORWARDS_PER_MICRO_STEP = 3
#: The passes over a run when ``eval_every`` is automatic, as for pre-training (plus the step-0 pass).
DEFAULT_PASSES = 10
#: Fewer batches than this make a noisy figure: validate less often instead.
MIN_BATCHES = 4
#: The most batches an automatic pass reads (the pre-training default).
MAX_BATCHES = 20


@dataclass(frozen=True)
class EvalPlan:
    batches: int
    every: int
    share: float  # the estimated share of the training time validation takes
    automatic: bool

    def describe(self) -> str:
        what = (
            f"validation: {self.batches} batch{'es' if self.batches != 1 else ''} every {self.every} "
            f"step{'s' if self.every != 1 else ''} and at step 0"
        )
        if self.automatic:
            return (
                f"{what} (~{self.share:.0%} of the training time, estimated; chosen automatically: set "
                "eval_batches and eval_every to change)"
            )
        return f"{what}, as set (~{self.share:.0%} of the training time, estimated)"


def passes(total: int, every: int) -> int:
    """Validation passes over a run: step 0, every ``every`` steps, and the last step."""
    return 1 + total // every + (1 if total % every else 0)


def plan_evaluation(
    total: int, grad_accum: int, *, eval_every: int = 0, eval_batches: int = 0, available: int | None = None
) -> EvalPlan:
    """The batches a validation pass reads and the steps between passes (see the module docstring).

    ``available``: the batches the held-out split has (a pass never reads more)."""
    total = max(1, total)
    cap = MAX_BATCHES if available is None else max(1, min(MAX_BATCHES, available))
    budget = EVAL_SHARE * total * max(1, grad_accum) * FORWARDS_PER_MICRO_STEP  # in validation batches
    every = eval_every or max(1, total // DEFAULT_PASSES)
    batches = eval_batches
    if not eval_batches:
        batches = _fit(budget, total, every, cap)
        if batches < MIN_BATCHES and not eval_every:  # validate less often, each pass less noisy
            while every < total and batches < min(MIN_BATCHES, cap):
                every += 1
                batches = _fit(budget, total, every, cap)
    read = batches if available is None else min(batches, max(1, available))
    share = passes(total, every) * read / (total * max(1, grad_accum) * FORWARDS_PER_MICRO_STEP)
    return EvalPlan(batches, every, share, automatic=not eval_batches)


def _fit(budget: float, total: int, every: int, cap: int) -> int:
    return max(1, min(cap, int(budget // passes(total, every))))
