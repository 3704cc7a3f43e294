"""kiln's Jinja engine renders every chat template in ../shared/chat-templates byte for byte
as Python's jinja2 does, configured the way Hugging Face transformers configures it
(trim_blocks, lstrip_blocks, loopcontrols, its tojson, raise_exception and strftime_now).
A template that raises for a conversation must fail in kiln with the same message."""
import json
import subprocess
from datetime import datetime

import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from kiln_testing import SHARED

TEMPLATES = sorted((SHARED / "chat-templates").glob("*.jinja"))

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. 'Paris'"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "description": "Days ahead", "default": 0},
            },
            "required": ["city"],
        },
    },
}

CONVERSATIONS = {
    "single_user": {"messages": [{"role": "user", "content": "Hello!"}]},
    "system_and_user": {"messages": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "What is 2+2?"}]},
    "multi_turn": {"messages": [
        {"role": "system", "content": "Be helpful."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke about \"quotes\" and 'apostrophes'.\nTwo lines."}]},
    "unicode_and_whitespace": {"messages": [
        {"role": "user", "content": "  Grüße aus Köln — 你好 😀  \n\n"},
        {"role": "assistant", "content": "\tTabbed reply\n"},
        {"role": "user", "content": "{{ not a template }} {% neither %}"}]},
    "no_generation_prompt": {"add_generation_prompt": False, "messages": [
        {"role": "user", "content": "Finish this"},
        {"role": "assistant", "content": "Done."}]},
    "tools": {"tools": [WEATHER_TOOL], "messages": [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 1}}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather",
         "content": "{\"temperature\": 21.5, \"sky\": \"clear\"}"},
        {"role": "user", "content": "Thanks"}]},
}


def hf_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def variables(conversation):
    v = {"bos_token": "<s>", "eos_token": "</s>", "add_generation_prompt": True}
    v.update(conversation)
    return v


@pytest.mark.parametrize("conversation", sorted(CONVERSATIONS))
@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.stem)
def test_renders_like_jinja2(template, conversation, build_tool):
    vars_ = variables(CONVERSATIONS[conversation])
    try:
        expected, expected_error = hf_environment().from_string(
            template.read_text()).render(**vars_), None
    except jinja2.exceptions.TemplateError as e:
        # raise_exception's message must come through; other errors (an undefined value
        # used, as some templates do with tool formats they do not expect) need only fail.
        expected, expected_error = None, str(e) if type(e) is jinja2.exceptions.TemplateError else ""
    except TypeError as e:
        # Python itself fails (e.g. json.dumps of the generator jinja2's map returns, in
        # llama-cpp-deepseek-r1 with tools): there is no output to compare with; kiln may
        # render (its map returns a list) or fail, but must not crash.
        proc = subprocess.run([str(build_tool("render_template")), str(template)],
                              input=json.dumps(vars_).encode(), capture_output=True)
        assert proc.returncode in (0, 1), (str(e), proc.stderr.decode())
        return
    proc = subprocess.run([str(build_tool("render_template")), str(template)],
                          input=json.dumps(vars_).encode(), capture_output=True)
    if expected_error is not None:
        assert proc.returncode == 1, f"jinja2 raised {expected_error!r}, kiln rendered"
        assert expected_error in proc.stderr.decode(), proc.stderr.decode()
        return
    assert proc.returncode == 0, proc.stderr.decode()
    got = proc.stdout.decode()
    if got != expected:
        # Show where they part, which is what one needs to fix it.
        i = next((k for k, (a, b) in enumerate(zip(got, expected)) if a != b),
                 min(len(got), len(expected)))
        pytest.fail(f"differs at {i}:\nkiln:   {got[max(0, i - 80):i + 80]!r}\n"
                    f"jinja2: {expected[max(0, i - 80):i + 80]!r}")


def test_every_template_renders_something(build_tool):
    """Guards the parametrized test above against passing vacuously (no templates found, or
    all raising)."""
    assert len(TEMPLATES) >= 17, f"only {len(TEMPLATES)} templates in {SHARED / 'chat-templates'}"
    rendered = 0
    for template in TEMPLATES:
        vars_ = variables(CONVERSATIONS["multi_turn"])
        proc = subprocess.run([str(build_tool("render_template")), str(template)],
                              input=json.dumps(vars_).encode(), capture_output=True)
        rendered += proc.returncode == 0 and len(proc.stdout) > 20
    assert rendered >= len(TEMPLATES) - 2
