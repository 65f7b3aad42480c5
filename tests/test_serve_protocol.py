"""The inference worker's protocol and the torch-free checks around it: every line round-trips,
every bad request is refused naming its field, and MODEL resolution names what to fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.serve import models, protocol
from engine.serve.protocol import ProtocolError, decode_reply, decode_request, encode


def test_every_request_round_trips():
    requests = [
        protocol.Load("1", model="my-run", checkpoint="200", adapter=None, device="cpu"),
        protocol.Generate(
            "2",
            messages=[protocol.Message("user", "héllo [/INST]")],
            system="be brief",
            max_new_tokens=9,
            temperature=0.0,
            top_k=5,
            top_p=0.5,
            repetition_penalty=1.2,
            stop=["\n\n"],
            seed=3,
            adapter=False,
        ),
        protocol.Render("3", prompt="plain"),
        protocol.Cancel("4", target="2"),
        protocol.Shutdown("5"),
    ]
    for request in requests:
        line = encode(request)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert json.loads(line)["v"] == protocol.PROTOCOL_VERSION
        assert decode_request(line) == request


def test_every_reply_round_trips_and_unknowns_are_ignored():
    replies = [
        protocol.Progress("1", phase="load", done=2, total=4, unit="steps", message="weights"),
        protocol.Ready("1", model="m", kind="pretrain", params=10, dtype="float32", device="cpu", chat=False),
        protocol.Delta("2", text="é", tokens=[1, 2]),
        protocol.Done("2", text="é!", finish_reason="cancelled", prompt_tokens=3, new_tokens=2),
        protocol.Rendered("3", text="<s>hi", tokens=2),
        protocol.Error(None, message="bad", field="temperature"),
        protocol.Bye("5"),
    ]
    for reply in replies:
        assert decode_reply(encode(reply)) == reply
    newer = json.dumps({"v": 1, "type": "delta", "id": "7", "text": "x", "from_the_future": 1})
    assert decode_reply(newer) == protocol.Delta("7", text="x")
    assert decode_reply('{"v": 1, "type": "hologram", "id": "7"}') is None
    assert decode_reply("not json") is None


def test_non_finite_floats_encode_as_null():
    line = encode(protocol.Done("1", tokens_per_s=float("inf")))
    assert json.loads(line)["tokens_per_s"] is None


BAD = [
    ("not json at all", None),
    ("[1, 2]", None),
    ('{"op": "teleport", "id": "1"}', "op"),
    ('{"id": "1"}', "op"),
    ('{"op": "load", "id": "1"}', "model"),
    ('{"op": "load", "id": "1", "model": "m", "modle": "x"}', "modle"),
    ('{"op": "load", "model": "m"}', "id"),
    ('{"op": "load", "id": 5, "model": "m"}', "id"),
    ('{"op": "load", "id": "1", "model": null}', "model"),
    ('{"op": "generate", "id": "1", "prompt": "a", "temperature": "hot"}', "temperature"),
    ('{"op": "generate", "id": "1", "prompt": "a", "temperature": Infinity}', "temperature"),
    ('{"op": "generate", "id": "1", "prompt": "a", "max_new_tokens": true}', "max_new_tokens"),
    ('{"op": "generate", "id": "1", "prompt": "a", "max_new_tokens": 2.5}', "max_new_tokens"),
    ('{"op": "generate", "id": "1", "prompt": "a", "stop": "x"}', "stop"),
    ('{"op": "generate", "id": "1", "prompt": "a", "stop": [1]}', "stop"),
    ('{"op": "generate", "id": "1", "prompt": "a", "adapter": "off"}', "adapter"),
    ('{"op": "generate", "id": "1"}', "prompt"),
    (
        '{"op": "generate", "id": "1", "prompt": "a", "messages": [{"role": "user", "content": "b"}]}',
        "prompt",
    ),
    ('{"op": "generate", "id": "1", "messages": []}', "messages"),
    ('{"op": "generate", "id": "1", "messages": ["hi"]}', "messages[0]"),
    ('{"op": "generate", "id": "1", "messages": [{"role": "robot", "content": "b"}]}', "messages[0].role"),
    ('{"op": "render", "id": "1", "messages": [{"role": "user", "content": 3}]}', "messages[0].content"),
    ('{"op": "cancel", "id": "1"}', "target"),
]


@pytest.mark.parametrize(("line", "field"), BAD)
def test_bad_requests_are_refused_naming_the_field(line, field):
    with pytest.raises(ProtocolError) as info:
        decode_request(line)
    assert info.value.field == field
    assert info.value.message
    if field is not None:
        assert field.split("[")[0] in info.value.message  # the message names it too


def test_sampling_checks_use_the_engines_messages():
    """The torch-free checks (`canvas generate`, the worker) say exactly what SamplingParams says."""
    from engine.config.errors import ConfigError
    from engine.model.generate import SamplingParams

    bad = [
        dict(max_new_tokens=0),
        dict(temperature=-0.5),
        dict(top_k=-1),
        dict(top_p=0.0),
        dict(top_p=1.5),
        dict(repetition_penalty=0.0),
    ]
    good = dict(max_new_tokens=5, temperature=0.7, top_k=0, top_p=1.0, repetition_penalty=1.0)
    models.check_sampling(**good)
    for change in bad:
        values = {**good, **change}
        with pytest.raises(ConfigError) as engine:
            SamplingParams(**values).validate()
        with pytest.raises(ProtocolError) as ours:
            models.check_sampling(**values)
        assert (ours.value.field, ours.value.message) == (engine.value.field, engine.value.message)


def test_resolution_errors_name_the_field_and_the_fix(tmp_path: Path):
    from engine.runs.store import create_run

    with pytest.raises(ProtocolError) as info:
        models.resolve("no-such-model")
    assert info.value.field == "model" and "Fix:" in info.value.message
    with pytest.raises(ProtocolError) as info:
        models.resolve("no-such-model", checkpoint="newest")
    assert info.value.field == "checkpoint" and "best, last or a step" in info.value.message
    with pytest.raises(ProtocolError) as info:
        models.resolve("owner/not-cached-anywhere")
    assert info.value.field == "model" and "cache" in info.value.message
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ProtocolError) as info:
        models.resolve(str(folder), adapter=str(tmp_path / "missing-adapter"))
    assert info.value.field == "adapter" and "does not exist" in info.value.message
    assert models.resolve(str(folder)).kind == "hf"

    run = create_run("pretrain", name="empty-run")
    with pytest.raises(ProtocolError) as info:
        models.resolve("empty-run")
    assert info.value.field == "checkpoint" and "no checkpoint yet" in info.value.message
    with pytest.raises(ProtocolError) as info:
        models.resolve(run.id, checkpoint="300")
    assert info.value.field == "checkpoint"
    ft = create_run("finetune", name="young-ft")
    with pytest.raises(ProtocolError) as info:
        models.resolve(ft.id[:-1])
    assert info.value.field == "checkpoint" and "no adapter yet" in info.value.message
    # A run that holds no model says what it is, with the right article.
    for kind, said in (("eval", "an eval run"), ("serve", "a serve run")):
        other = create_run(kind, name=f"a-{kind}")
        with pytest.raises(ProtocolError) as info:
            models.resolve(other.id)
        assert info.value.field == "model"
        assert info.value.message == (
            f"run {other.id} (a-{kind}) is {said}, which holds no model to talk to. Fix: pass a "
            "pre-training or fine-tune run (`canvas runs` lists them)."
        )


def test_the_readme_protocol_table_is_generated_from_the_code():
    from engine.serve import protocol_doc

    readme = Path(__file__).resolve().parents[1] / "README.md"
    assert protocol_doc.current_block(readme) == protocol_doc.render(), (
        f"README.md's protocol table is stale: run `{protocol_doc.REGENERATE}`"
    )
    for op in protocol.REQUEST_TYPES:
        assert f"| `{op}` |" in protocol_doc.render()
