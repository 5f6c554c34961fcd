"""The README and docs/ cannot drift: the set-up paths match .ci/run, and every `$ gpucost ...`
example in a ```console block is run and must print exactly the output shown under it. A line that
is only ``...`` stands for lines left out (the README shows the head of a long answer): the lines
around it must match, in order, with anything between.

To refresh the outputs after an intended change: ``python tests/test_readme.py --update``.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
CONSOLE = re.compile(r"```console\n(.*?)```", re.S)


def examples(text: str) -> list[tuple[str, str]]:
    """(command, expected output) for each `$ gpucost` line in a document's console blocks."""
    found = []
    for block in CONSOLE.findall(text):
        parts = re.split(r"^\$ ", block, flags=re.M)
        for part in parts[1:]:
            command, _, output = part.partition("\n")
            if command.startswith("gpucost "):
                found.append((command, output.rstrip("\n")))
    return found


def run_example(command: str) -> tuple[int, str]:
    """Run one README command in-process; return (exit code, stdout)."""
    import contextlib
    import io

    from estimator.cli import main

    from unittest import mock

    out, err = io.StringIO(), io.StringIO()
    # The example calibration file ages; its staleness warning is not what the example shows.
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            mock.patch("estimator.timing.measured.STALE_AFTER_DAYS", 10**6):
        code = main(shlex.split(command)[1:])
    return code, (out.getvalue() + err.getvalue()).rstrip("\n")


EXAMPLES = [example for doc in DOCS for example in examples(doc.read_text())]


def test_readme_has_examples_for_the_slides_questions():
    commands = " ".join(c for c, _ in EXAMPLES)
    for needle in ("--params 175B --tokens 300B", "--model deepseek-v3", "--gpu-hours", "compare", "validate",
                   "--deadline", "--budget"):
        assert needle in commands


ELIDED = "..."


def matches(output: str, expected: str) -> bool:
    """Whether ``output`` is ``expected``, where each ``...`` line of ``expected`` stands for any
    number of lines (none included)."""
    if ELIDED not in expected.splitlines():
        return output == expected
    pattern = "\n".join(".*?" if line == ELIDED else re.escape(line) for line in expected.splitlines())
    pattern = pattern.replace("\n.*?\n", "(?:\n.*?)?\n").replace("\n.*?", "(?:\n.*)?")
    return re.fullmatch(pattern, output, re.S) is not None


def _elide_like(expected: str, output: str) -> str:
    """A new output cut as ``expected`` was: as many lines before and after each ``...`` (--update)."""
    old = expected.splitlines()
    if ELIDED not in old:
        return output
    new = output.splitlines()
    cut = old.index(ELIDED)
    head, tail = old[:cut], old[cut + 1:]
    return "\n".join(new[:len(head)] + [ELIDED] + (new[len(new) - len(tail):] if tail else []))


def test_an_elided_example_matches_only_its_own_lines():
    assert matches("a\nb\nc\nd", "a\n...\nd") and matches("a\nd", "a\n...\nd") and matches("a\nb\nc", "a\n...")
    assert not matches("a\nb\nc\nx", "a\n...\nd") and not matches("z\nb", "a\n...")


@pytest.mark.parametrize(("command", "expected"), EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_readme_example_prints_what_the_readme_shows(command, expected):
    code, output = run_example(command)
    assert code == 0, output
    assert matches(output, expected), output


def test_readme_test_command_is_what_ci_runs():
    readme, ci = README.read_text(), (ROOT / ".ci" / "run").read_text()
    assert 'pip install "torch==2.13.0"' in readme and '"torch==2.13.0"' in ci
    assert 'pip install ".[test]"' in readme and '".[test]"' in ci
    assert "python -m pytest -q" in readme and "python -m pytest -q" in ci


def _update() -> None:
    """Rewrite each console block: keep its `$ ` command lines, regenerate the gpucost outputs."""

    def fill(match: re.Match) -> str:
        shown = dict(examples(match.group(0)))
        body = []
        for line in match.group(1).splitlines():
            if line.startswith("$ "):
                body.append(line)
                if line.startswith("$ gpucost "):
                    body.append(_elide_like(shown.get(line[2:], ""), run_example(line[2:])[1]))
        return "```console\n" + "\n".join(body) + "\n```"

    for doc in DOCS:
        doc.write_text(CONSOLE.sub(fill, doc.read_text()))


if __name__ == "__main__" and "--update" in sys.argv:
    sys.path.insert(0, str(ROOT))
    _update()


def test_readme_python_examples_print_what_their_comments_say(capsys):
    """Python blocks (README and docs/) whose print() lines carry the expected output as a comment
    are run; the profiler blocks (a minute of measuring) show no output and are not."""
    blocks = [(doc, b) for doc in DOCS for b in re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
              if any(line.startswith("print(") and "#" in line for line in b.splitlines())]
    assert blocks
    for doc, block in blocks:
        expected = [line.split("#", 1)[1].strip() for line in block.splitlines()
                    if line.startswith("print(") and "#" in line]
        exec(compile(block, doc.name, "exec"), {})
        assert capsys.readouterr().out.splitlines() == expected, doc.name


def test_the_readme_is_a_front_page():
    """At most 300 lines, and exactly two set-up commands: one that installs and answers, one that
    installs and runs the tests."""
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", setup, re.S)
    assert len(commands) == 2
    assert "pip install . && gpucost estimate" in commands[0]
    assert 'pip install ".[test]" && python -m pytest -q' in commands[1]
