"""Conversational data for fine-tuning, one job per module.

* :mod:`.spec`: the ``--data`` spec (``embedded``, ``guanaco``, ``oasst1``, ``hf:…``, a path, options),
  parsed and described; shares its grammar with pre-training data (:mod:`engine.data.grammar`);
* :mod:`.sources`: cheap checks of the files a spec names, then reading rows from files, folders
  and the Hub;
* :mod:`.formats` and :mod:`.oasst`: each row format (messages, ShareGPT, Guanaco, Alpaca,
  OpenAssistant trees) detected and turned into a conversation;
* :mod:`.conversation`: what a conversation is and the check each one passes;
* :mod:`.split`: the seeded held-out split;
* :mod:`.load`: the pipeline that chains them (:func:`.load.load_conversations`).

A local file in a Hub format goes through the same converter as the Hub dataset, which is how the
Hub formats are tested offline. Every problem is a :class:`~engine.config.errors.ConfigError` of
one paragraph that names the file and line (or row), the field, what was found and the fix;
nothing is merged or guessed silently. Message text is stripped of surrounding whitespace (chat
templates add their own separators).

Importing any of these modules is torch-free and ``datasets``-free, so the console can check a spec
while the user types. Nothing is re-exported here: import from the module that does the job.
"""
