"""The README's set-up commands and library example stay true."""

from __future__ import annotations

import re
import textwrap
import tomllib
from pathlib import Path

from dynasor import Query
from dynasor.allocator import AllocatorConfig, StopRule
from dynasor.clock import run
from dynasor.engine.sim import SimBackend, SyntheticSource
from dynasor.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_first_shell_block_is_the_two_setup_commands() -> None:
    block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert block is not None
    assert block.group(1).strip().splitlines() == [
        "pip install -c constraints.txt -e . && dynasor demo",
        "pip install -c constraints.txt -e '.[dev]' && pytest",
    ]


def test_the_lock_pins_every_dependency_exactly() -> None:
    lines = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if line and not line.startswith("#")]
    pinned = {line.split("==")[0].lower().replace("_", "-") for line in lines if "==" in line}
    assert len(pinned) == len(lines), "every line of constraints.txt pins one exact version"
    wanted = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = wanted["dependencies"] + wanted["optional-dependencies"]["dev"]
    names = {re.split(r"[\[<>=!~ ]", req, maxsplit=1)[0].lower().replace("_", "-") for req in requirements}
    assert names <= pinned, f"not locked: {sorted(names - pinned)}"


def test_ci_runs_the_readme_test_command_in_a_fresh_venv() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "awk" in ci and 'bash -c "$TEST_CMD"' in ci  # the command is read from this README
    assert 'rm -rf "$CI_ENV"' in ci and 'python3 -m venv "$CI_ENV"' in ci


def test_library_example_runs_on_the_sim_engine() -> None:
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "register_algorithm" in b]
    assert len(blocks) == 1
    namespace: dict[str, object] = {}
    exec(compile(textwrap.dedent(blocks[0]), "README.md", "exec"), namespace)

    async def main() -> list[object]:
        source = SyntheticSource(seed=1)
        source.set_difficulty("easy", 0.0)
        source.set_difficulty("hard", 1.0)
        config = AllocatorConfig({"vote": StopRule("entropy", 0.6, min_samples=8)})
        runtime = Runtime(SimBackend(source=source), allocator=config)
        results = [await runtime.run(Query("What is 6 x 7?", "vote", id=q)) for q in ("easy", "hard")]
        await runtime.aclose()
        return results

    easy, hard = run(main())
    assert easy.answer == SyntheticSource(seed=1).reference("easy")  # type: ignore[attr-defined]
    assert easy.samples < hard.samples <= 16  # type: ignore[attr-defined]


def test_docs_name_files_that_exist() -> None:
    """Every repository path the README and docs/ name (in backticks, or as a link) exists."""
    named = re.compile(r"`((?:certaindex|algorithms|dynasor|dynasor_cli|eval|scripts|examples|tests|docs)/[\w./-]*)`")
    linked = re.compile(r"\]\(([\w./-]+\.md)\)")
    missing = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        paths = [ROOT / p for p in named.findall(text)] + [doc.parent / p for p in linked.findall(text)]
        missing += [f"{doc.name}: {p.relative_to(ROOT)}" for p in paths if "<" not in str(p) and not p.exists()]
    assert missing == []
