"""Helpers of scripts/cluster.d/images.sh that are easier in Python than in bash (stdlib only).

  images_helper.py context-hash DIR [DOCKERFILE]
                                        sha256 of what the Dockerfile's build reads: the
                                        Dockerfile (default DIR/Dockerfile), .dockerignore and
                                        every file its COPY/ADD instructions take from the
                                        context DIR, minus what .dockerignore drops
  images_helper.py from-images DOCKERFILE [KEY=VALUE...]
                                        the images its FROM lines name (stages and scratch left
                                        out), build args and ARG defaults substituted
  images_helper.py archive-info TAR     a docker-archive's config digest (the image ID) on the
                                        first line, then its names as the kubelet resolves them
  images_helper.py manifest-config      the config digest of the image manifest on stdin
  images_helper.py kube-ref NAME        the reference the kubelet resolves NAME to
                                        (flowpod:dev -> docker.io/library/flowpod:dev)
  images_helper.py stage-tails LOG      "STAGE IMAGE-ID" of the last image of each stage but the
                                        last in a `buildah bud --layers` log
  images_helper.py chart-image VALUES KEY   "repository:tag" of an image block in a chart's
                                        values.yaml, e.g. KEY=minio.image
  images_helper.py apt-mirror SUITE     the archive URI this machine's apt uses for SUITE

The context hash is the flowpod image's cache key: it changes exactly when `docker build` (or
buildah) would see different input, and it costs a few milliseconds instead of a build.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import stat
import sys
import tarfile
from pathlib import Path

# --- .dockerignore, matched the way Docker matches it -------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax: `**` spans folders, `*` and `?` stay inside one, `\\` escapes."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                # `**/` also matches no folder at all: `**/x` matches `x` at the top.
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z")


def read_ignore_rules(path: Path) -> list[tuple[re.Pattern[str], bool]]:
    """(regex, excludes) per pattern, in file order: the last matching pattern decides."""
    rules: list[tuple[re.Pattern[str], bool]] = []
    if not path.is_file():
        return rules
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        excludes = not line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip().lstrip("/"))
        rules.append((_pattern_regex(pattern), excludes))
    return rules


def ignored(rel: str, rules: list[tuple[re.Pattern[str], bool]]) -> bool:
    # A pattern that matches a folder drops everything inside it, so each parent is tried too.
    parts = rel.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for regex, excludes in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            result = excludes
    return result


# --- what the Dockerfile copies ------------------------------------------------------------------


def copy_sources(dockerfile: str) -> list[str]:
    """Sources of COPY/ADD instructions that read the build context (not `--from=` a stage)."""
    joined = re.sub(r"\\\n", " ", dockerfile)
    sources = []
    for line in joined.splitlines():
        words = line.strip().split(None, 1)
        if len(words) < 2 or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = json.loads(words[1]) if words[1].lstrip().startswith("[") else shlex.split(words[1])
        if any(arg.startswith("--from") for arg in args):
            continue
        sources += [arg for arg in args if not arg.startswith("--")][:-1]
    return sources


def context_files(repo: Path, sources: list[str]) -> list[str]:
    rules = read_ignore_rules(repo / ".dockerignore")
    found: set[str] = set()
    for source in sources:
        top = os.path.normpath(source.lstrip("/"))
        if (repo / top).is_dir() and not (repo / top).is_symlink():
            for folder, dirs, files in os.walk(repo / top):
                rel_folder = os.path.relpath(folder, repo)
                dirs.sort()
                for name in files + [d for d in dirs if (Path(folder) / d).is_symlink()]:
                    rel = os.path.normpath(os.path.join(rel_folder, name))
                    if not ignored(rel, rules):
                        found.add(rel)
        elif os.path.lexists(repo / top) and not ignored(top, rules):
            found.add(top)
    return sorted(found)


def context_hash(repo: Path, dockerfile_path: Path | None = None) -> str:
    digest = hashlib.sha256()
    dockerfile_path = dockerfile_path or repo / "Dockerfile"
    dockerfile = dockerfile_path.read_text()
    for name, path in (("Dockerfile", dockerfile_path), (".dockerignore", repo / ".dockerignore")):
        digest.update(f"{name}\0".encode() + (path.read_bytes() if path.exists() else b"") + b"\0")
    for rel in context_files(repo, copy_sources(dockerfile)):
        path = repo / rel
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            body = b"link:" + os.readlink(path).encode()
        else:
            body = hashlib.sha256(path.read_bytes()).hexdigest().encode()
        # The executable bit is part of what COPY copies; owner and times are not.
        mode = "x" if info.st_mode & 0o111 else "-"
        digest.update(f"{rel}\0{mode}\0".encode() + body + b"\0")
    return digest.hexdigest()


def from_images(dockerfile: str, build_args: dict[str, str]) -> list[str]:
    """The images FROM lines name, with ${ARG}/$ARG from build args or ARG defaults."""
    values: dict[str, str] = {}
    stages: set[str] = set()
    images: list[str] = []
    for line in re.sub(r"\\\n", " ", dockerfile).splitlines():
        words = line.split()
        if not words:
            continue
        if words[0].upper() == "ARG" and len(words) > 1:
            name, _, default = words[1].partition("=")
            values[name] = build_args.get(name, default)
        elif words[0].upper() == "FROM":
            args = [w for w in words[1:] if not w.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), ""), args[0])
            if len(args) >= 3 and args[1].upper() == "AS":
                stages.add(args[2].lower())
            if image.lower() not in stages and image != "scratch" and image not in images:
                images.append(image)
    return images


# --- docker-archive and manifests ---------------------------------------------------------------


def archive_info(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            raise SystemExit(f"{archive}: no manifest.json (not a docker-archive)")
        manifest = json.load(member)
    if len(manifest) != 1:
        raise SystemExit(f"{archive}: holds {len(manifest)} images; load archives of one image")
    entry = manifest[0]
    config = "sha256:" + entry["Config"].rsplit("/", 1)[-1].removesuffix(".json")
    return [config, *(kube_ref(tag) for tag in entry.get("RepoTags") or [])]


def kube_ref(name: str) -> str:
    """Docker's normalisation, as the kubelet and containerd's CRI plugin apply it."""
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    if ":" not in name.rsplit("/", 1)[-1] and "@" not in name:
        name += ":latest"
    return name


def stage_tails(log: str) -> list[str]:
    """Each earlier stage's last image: with --layers, `--> ID` follows every committed step."""
    tails: dict[int, str] = {}
    stage = total = 0
    for line in log.splitlines():
        if step := re.match(r"\[(\d+)/(\d+)\] STEP ", line):
            stage, total = int(step[1]), int(step[2])
        elif (image := re.fullmatch(r"--> ([0-9a-f]+)", line.strip())) and stage:
            tails[stage] = image[1]
    return [f"{n} {image}" for n, image in sorted(tails.items()) if n < total]


def manifest_config(text: str) -> str:
    manifest = json.loads(text)
    return str(manifest.get("config", {}).get("digest", ""))


# --- small readers: a chart's values.yaml, apt's sources -----------------------------------------


def chart_image(values: Path, key: str) -> str:
    """repository:tag under KEY (a dotted path of plain mappings); enough YAML for values.yaml."""
    wanted, path, found = key.split("."), list[str](), dict[str, str]()
    for line in values.read_text().splitlines():
        text = line.split(" #", 1)[0].rstrip()
        if not text.strip() or text.lstrip().startswith("#") or ":" not in text:
            continue
        depth = (len(text) - len(text.lstrip())) // 2
        name, _, value = text.strip().partition(":")
        del path[depth:]
        path.append(name)
        if path[:-1] == wanted and value.strip():
            found[name] = value.strip().strip("\"'")
    if not found.get("repository") or not found.get("tag"):
        raise SystemExit(f"{values}: no {key}.repository and {key}.tag")
    return f"{found['repository']}:{found['tag']}"


def apt_mirror(suite: str) -> str:
    """The URI of the first `deb` source (deb822 or one-line format) that serves SUITE."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = dict(re.findall(r"^(\w[\w-]*):[ \t]*(.*)$", stanza, re.MULTILINE))
            types, suites = fields.get("Types", "").split(), fields.get("Suites", "").split()
            if "deb" in types and suite in suites:
                return str(fields["URIs"].split()[0])
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]:
        for line in path.read_text().splitlines() if path.is_file() else []:
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                return words[1]
    return "http://deb.debian.org/debian"


def main(argv: list[str]) -> int:
    if argv[:1] == ["context-hash"] and len(argv) in (2, 3):
        print(context_hash(Path(argv[1]), Path(argv[2]) if len(argv) == 3 else None))
    elif argv[:1] == ["from-images"] and len(argv) >= 2:
        pairs = dict(arg.split("=", 1) for arg in argv[2:])
        print("\n".join(from_images(Path(argv[1]).read_text(), pairs)))
    elif argv[:1] == ["archive-info"] and len(argv) == 2:
        print("\n".join(archive_info(Path(argv[1]))))
    elif argv == ["manifest-config"]:
        print(manifest_config(sys.stdin.read()))
    elif argv[:1] == ["kube-ref"] and len(argv) == 2:
        print(kube_ref(argv[1]))
    elif argv[:1] == ["stage-tails"] and len(argv) == 2:
        print("\n".join(stage_tails(Path(argv[1]).read_text())))
    elif argv[:1] == ["chart-image"] and len(argv) == 3:
        print(chart_image(Path(argv[1]), argv[2]))
    elif argv[:1] == ["apt-mirror"] and len(argv) == 2:
        print(apt_mirror(argv[1]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
