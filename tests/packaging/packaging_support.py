"""The Dockerfile and .dockerignore read the way Docker reads them, for the packaging tests.

Only what those tests need, and no Docker engine: the instructions grouped into stages
(continuation lines joined, comment lines dropped, global ARG defaults substituted into FROM),
the build context as .dockerignore leaves it (Docker's matching rules: a pattern matches from the
context's root, `**` spans folders, a folder's pattern covers everything inside it, the last
matching pattern decides, `!` re-includes), and the builder stage's source tree laid out by
replaying its COPY instructions on that context.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "REPO",
    "Dockerfile",
    "IgnoreRules",
    "Instruction",
    "Stage",
    "build_context",
    "lay_out_stage",
    "parse_dockerfile",
]

REPO = Path(__file__).resolve().parents[2]


# --- Dockerfile ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One instruction: its keyword in upper case, its arguments as one line, where it starts."""

    keyword: str
    args: str
    line: int

    def words(self) -> list[str]:
        """The arguments split like Docker does: the JSON (exec) form, else shell-like words."""
        text = self.args.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                pass
            else:
                if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
                    return list(parsed)
        return shlex.split(text)


@dataclass(frozen=True)
class Stage:
    """The instructions from one FROM to the next; ``base`` has global ARG defaults substituted."""

    base: str
    name: str | None
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[Instruction]:
        return [item for item in self.instructions if item.keyword == keyword]


@dataclass(frozen=True)
class Dockerfile:
    global_args: dict[str, str]
    stages: tuple[Stage, ...]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"the Dockerfile has no stage named {name!r}")

    @property
    def builder(self) -> Stage:
        """The one stage the final stage copies from (``COPY --from=<stage>``)."""
        names = {
            word.partition("=")[2]
            for copy in self.final.all("COPY")
            for word in copy.words()
            if word.startswith("--from=")
        }
        if len(names) != 1:
            raise ValueError(f"the final stage should copy from one builder stage, not {names}")
        return self.stage(names.pop())


_LINE_CONTINUATION = re.compile(r"\\\s*$")


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """(first line number, instruction text) with continuations joined and comments dropped."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        # Docker drops comment lines even in the middle of a continued instruction.
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if _LINE_CONTINUATION.search(raw):
            pending.append(_LINE_CONTINUATION.sub("", raw).strip())
            continue
        pending.append(stripped)
        yield start, " ".join(part for part in pending if part)
        pending = []
    if pending:
        yield start, " ".join(part for part in pending if part)


def _substitute(text: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values.get(name, "")

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def parse_dockerfile(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    current: list[Instruction] | None = None
    base, name = "", None
    for line, logical in _logical_lines(text):
        keyword, _, args = logical.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip(), line)
        if instruction.keyword == "FROM":
            if current is not None:
                stages.append(Stage(base, name, tuple(current)))
            words = [word for word in instruction.words() if not word.startswith("--")]
            base = _substitute(words[0], global_args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            current = []
        elif current is None:
            if instruction.keyword != "ARG":
                raise ValueError(f"line {line}: only ARG may come before the first FROM")
            arg_name, _, default = instruction.args.partition("=")
            global_args[arg_name.strip()] = default.strip().strip('"')
        else:
            current.append(instruction)
    if current is None:
        raise ValueError("the Dockerfile has no FROM")
    stages.append(Stage(base, name, tuple(current)))
    return Dockerfile(global_args, tuple(stages))


# --- .dockerignore and the build context ---------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(char))
        i += 1
    out.append("$")
    return re.compile("".join(out))


@dataclass(frozen=True)
class IgnoreRules:
    """The patterns of a .dockerignore, in order: (regex, is an exception with ``!``)."""

    patterns: tuple[tuple[re.Pattern[str], bool], ...]

    @classmethod
    def parse(cls, text: str) -> IgnoreRules:
        patterns = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            line = line[1:].strip() if exception else line
            line = posixpath.normpath(line).lstrip("/")
            patterns.append((_pattern_regex(line), exception))
        return cls(tuple(patterns))

    @property
    def has_exceptions(self) -> bool:
        return any(exception for _, exception in self.patterns)

    def excludes(self, path: str) -> bool:
        """Whether the context leaves out ``path`` (relative, '/'-separated)."""
        parts = path.split("/")
        candidates = ["/".join(parts[: end + 1]) for end in range(len(parts))]
        excluded = False
        for regex, exception in self.patterns:
            if any(regex.match(candidate) for candidate in candidates):
                excluded = not exception
        return excluded


def build_context(root: Path = REPO) -> set[str]:
    """The files (relative, '/'-separated) that `docker build root` sends as its context."""
    ignore_file = root / ".dockerignore"
    rules = IgnoreRules.parse(ignore_file.read_text() if ignore_file.exists() else "")
    files: set[str] = set()
    for folder, subfolders, names in os.walk(root):
        relative = Path(folder).relative_to(root).as_posix()
        prefix = "" if relative == "." else relative + "/"
        if not rules.has_exceptions:
            # Nothing inside an excluded folder can come back: skip .git and .venv unread.
            subfolders[:] = [sub for sub in subfolders if not rules.excludes(prefix + sub)]
        files.update(prefix + name for name in names if not rules.excludes(prefix + name))
    return files


# --- the builder's source tree -------------------------------------------------------------------


def lay_out_stage(
    stage: Stage, context: set[str], rootfs: Path, source: Path = REPO
) -> dict[int, str]:
    """Replay ``stage``'s COPY instructions from the build context into ``rootfs``.

    Returns the working directory in effect at each RUN instruction (by line), so a caller knows
    where a command would run. A COPY source that is not in the context fails, as in Docker;
    ``COPY --from`` and wildcards are not supported (the builder uses neither).
    """
    workdir = "/"
    run_dirs: dict[int, str] = {}
    for instruction in stage.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, instruction.args.strip())
        elif instruction.keyword == "RUN":
            run_dirs[instruction.line] = workdir
        elif instruction.keyword in ("COPY", "ADD"):
            words = [word for word in instruction.words() if not word.startswith("--")]
            if any(word.startswith("--from") for word in instruction.words()):
                raise ValueError(f"line {instruction.line}: COPY --from is not replayed")
            _copy(words[:-1], posixpath.join(workdir, words[-1]), context, rootfs, source,
                  instruction.line)
    return run_dirs


def _copy(sources: Sequence[str], dest: str, context: set[str], rootfs: Path, root: Path,
          line: int) -> None:
    into_folder = dest.endswith("/") or len(sources) > 1
    for src in sources:
        if any(char in src for char in "*?["):
            raise ValueError(f"line {line}: wildcard COPY sources are not replayed: {src!r}")
        src = posixpath.normpath(src).lstrip("/")
        if src in context:
            target = posixpath.join(dest, posixpath.basename(src)) if into_folder else dest
            _place(root / src, rootfs, target)
            continue
        inside = sorted(path for path in context if path.startswith(src + "/") or src == ".")
        if not inside:
            raise FileNotFoundError(
                f"line {line}: COPY source {src!r} is not in the build context "
                "(missing, or excluded by .dockerignore)"
            )
        for path in inside:
            relative = path if src == "." else path[len(src) + 1 :]
            _place(root / path, rootfs, posixpath.join(dest, relative))


def _place(file: Path, rootfs: Path, target: str) -> None:
    destination = rootfs / target.lstrip("/")
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(file, destination)
