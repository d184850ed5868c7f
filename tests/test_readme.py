"""Every ```python block of README.md runs as written.

The blocks run in order, in ONE shared namespace (as a reader who pastes them one after
the other into a session would), in a temporary working directory, on the CPU: CUDA is
hidden (``torch.cuda.is_available()`` is False while a block runs), so a README that
says ``device = "cuda" if torch.cuda.is_available() else "cpu"`` is tested as on a
machine without a GPU. Each block is its own test case, named after its line in
README.md; a traceback points at README.md's own line numbers. Selecting one case
(``-k L123``) first runs the blocks before it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)")


@dataclass
class Block:
    line: int  # README line of the block's first code line
    code: str

    @property
    def name(self) -> str:
        first = next((s.strip() for s in self.code.splitlines() if s.strip()), "")
        return f"README.md:{self.line} ({first[:60]})"


def python_blocks(text: str) -> list[Block]:
    """The fenced blocks whose info string is ``python`` (or ``py``), in order."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.groups()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), None)
        if end is None:
            raise ValueError(f"README.md:{i + 1}: code fence never closed")
        if lang in ("python", "py"):
            blocks.append(Block(i + 2, "\n".join(lines[i + 1 : end]) + "\n"))
        i = end + 1
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


class Session:
    """Runs the blocks in order in one namespace; remembers which ran and which failed."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.namespace: dict = {"__name__": "__readme__"}
        self.done = 0
        self.failed: Block | None = None

    def run_through(self, index: int, monkeypatch: pytest.MonkeyPatch) -> None:
        """Run the blocks up to ``index`` (inclusive) not run yet; raise on the first that fails."""
        while self.done <= index:
            if self.failed is not None:
                pytest.fail(f"not run: an earlier block failed, {self.failed.name}")
            block = BLOCKS[self.done]
            self.done += 1
            # Padded so that the traceback's line numbers are README.md's.
            code = compile("\n" * (block.line - 1) + block.code, str(README), "exec")
            with monkeypatch.context() as patch:
                patch.chdir(self.workdir)
                patch.setattr(torch.cuda, "is_available", lambda: False)
                try:
                    exec(code, self.namespace)
                except BaseException:
                    self.failed = block
                    raise


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    state = torch.get_rng_state()
    torch.manual_seed(0)
    yield Session(tmp_path_factory.mktemp("readme"))
    torch.set_rng_state(state)


def test_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 5, [b.name for b in BLOCKS]
    assert all(b.code.strip() for b in BLOCKS), "an empty ```python block"


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"L{b.line}" for b in BLOCKS])
def test_readme_block_runs(index: int, session: Session, monkeypatch: pytest.MonkeyPatch):
    try:
        session.run_through(index, monkeypatch)
    except Exception as err:
        raise AssertionError(f"{BLOCKS[index].name} failed: {type(err).__name__}: {err}") from err


def test_parser_finds_blocks_and_their_lines() -> None:
    text = "intro\n```python\na = 1\n```\n```sh\nls\n```\n````python\nb = '```'\n````\n"
    blocks = python_blocks(text)
    assert [(b.line, b.code) for b in blocks] == [(3, "a = 1\n"), (9, "b = '```'\n")]
    with pytest.raises(ValueError, match="README.md:2"):
        python_blocks("x\n```python\ny = 1\n")
