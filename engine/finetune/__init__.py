"""QLoRA fine-tuning: a pre-trained causal LM (4-bit + LoRA) taught to follow conversations.

One module a concern:

- :mod:`engine.finetune.chat_data` — conversational data, a module a job: the spec (``embedded``,
  ``guanaco``, ``oasst1``, local JSONL, Hub datasets), reading sources, the row formats,
  validation and the held-out split. Torch-free.
- :mod:`engine.finetune.embedded_chat` — the embedded conversations built offline from the
  standard library's documentation. Torch-free.
- :mod:`engine.finetune.chat_format` — chat templates and the assistant-only label mask.
- :mod:`engine.finetune.batches` — packed or padded batches that resume at the exact position.
- :mod:`engine.finetune.base` — what ``--base`` names (a folder, a Hub id, one of our runs), checked
  before anything heavy loads. Torch-free.
- :mod:`engine.finetune.qlora` — loading the base quantised and wrapping it with LoRA (peft).
- :mod:`engine.finetune.trainer` / :mod:`engine.finetune.worker` — the run itself.

A conversation is a list of messages ``{"role": "system" | "user" | "assistant", "content": str}``.
"""
