"""The runtime lock (issue 24, F5): requirements.txt is the hashed lock of requirements.in that the deployment and
`make setup` install (docs/deploy.md, "Runtime dependencies: a hashed lock").

Checked here, offline: every requirement of the lock is pinned with `==` and carries at least one sha256; the only
option it holds is `--only-binary :all:` (no index, no include, no editable or URL requirement); every range of
requirements.in admits the version pinned for it; and the Makefile installs the lock with `--require-hashes` before the
development tools. That PyPI's files match the hashes is checked by pip itself, on every `make setup` of a fresh clone
(CI) and on every deployment. Each check is fed the broken copy it exists to catch.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.txt"
RANGES = ROOT / "requirements.in"
MAKEFILE = ROOT / "Makefile"

HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}", re.ASCII)
ALLOWED_OPTIONS = {"--only-binary :all:"}


def logical_lines(text: str) -> list[str]:
    """Lines as pip reads them: comments dropped (a `#` at the start or after whitespace), continuations joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            lines.append(line)
    if pending.strip():
        lines.append(pending.strip())
    return lines


def lock_problems(text: str) -> tuple[dict[str, str], list[str]]:
    """The pins of a lock ({canonical name: version}) and what is wrong with it, one message per problem."""
    pins: dict[str, str] = {}
    problems: list[str] = []
    for line in logical_lines(text):
        if line.startswith("-"):
            if line not in ALLOWED_OPTIONS:
                problems.append(f"option not allowed in the lock: {line}")
            continue
        spec, *options = re.split(r"\s+(?=--)", line)
        hashes = [o for o in options if HASH.fullmatch(o.strip())]
        if len(hashes) != len(options):
            problems.append(f"{spec}: only --hash=sha256:<64 hex> may follow a requirement: {options}")
        if not hashes:
            problems.append(f"{spec}: no --hash=sha256")
        try:
            requirement = Requirement(spec)
        except InvalidRequirement as error:
            problems.append(f"{spec}: not a requirement ({error})")
            continue
        specifiers = list(requirement.specifier)
        if requirement.url or len(specifiers) != 1 or specifiers[0].operator != "==" or "*" in specifiers[0].version:
            problems.append(f"{spec}: not pinned with == to one version")
            continue
        name = canonicalize_name(requirement.name)
        version = specifiers[0].version
        if pins.get(name, version) != version:
            problems.append(f"{name}: pinned twice ({pins[name]} and {version})")
        pins[name] = version
    if not pins:
        problems.append("the lock pins nothing")
    return pins, problems


def range_problems(ranges_text: str, pins: dict[str, str]) -> list[str]:
    """Every requirement of requirements.in must be in the lock, at a version its range admits."""
    problems: list[str] = []
    for line in logical_lines(ranges_text):
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{name}: in requirements.in but not in the lock (run `make lock`)")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{name}: the lock pins {pins[name]}, outside requirements.in's {requirement.specifier}")
    return problems


def test_every_requirement_of_the_lock_is_pinned_and_hashed() -> None:
    pins, problems = lock_problems(LOCK.read_text())
    assert problems == []
    # The runtime and its transitive dependencies, not just the direct ones.
    assert {"boto3", "botocore", "azure-core", "cryptography", "urllib3"} <= set(pins)
    assert "--only-binary :all:" in logical_lines(LOCK.read_text())


def test_the_ranges_admit_the_pinned_versions() -> None:
    pins, _ = lock_problems(LOCK.read_text())
    assert range_problems(RANGES.read_text(), pins) == []


BROKEN_LOCKS = {
    "no hash": ("boto3==1.35.0\n", "no --hash=sha256"),
    "a range": ("boto3>=1.35 \\\n    --hash=sha256:" + "a" * 64 + "\n", "not pinned with =="),
    "a wildcard": ("boto3==1.* --hash=sha256:" + "a" * 64 + "\n", "not pinned with =="),
    "md5": ("boto3==1.35.0 --hash=md5:" + "a" * 32 + "\n", "only --hash=sha256"),
    "short hash": ("boto3==1.35.0 --hash=sha256:abc\n", "only --hash=sha256"),
    "another index": ("--extra-index-url https://example.invalid/simple\n", "option not allowed"),
    "an include": ("-r requirements.in\n", "option not allowed"),
    "editable": ("-e .\n", "option not allowed"),
    "a URL": ("boto3 @ https://example.invalid/boto3.whl --hash=sha256:" + "a" * 64 + "\n", "not pinned with =="),
    "two versions": (
        f"six==1.16.0 --hash=sha256:{'a' * 64}\nsix==1.17.0 --hash=sha256:{'b' * 64}\n",
        "pinned twice",
    ),
    "empty": ("# nothing\n", "pins nothing"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_LOCKS))
def test_a_broken_lock_is_caught(case: str) -> None:
    text, message = BROKEN_LOCKS[case]
    _, problems = lock_problems(text)
    assert any(message in problem for problem in problems), problems


def test_a_line_of_the_real_lock_without_its_hashes_is_caught() -> None:
    text = LOCK.read_text()
    broken = re.sub(r"(?m)^(botocore==\S+) \\\n(?:    --hash=\S+ \\\n)*    --hash=\S+\n", r"\1\n", text)
    assert broken != text
    (pin,) = re.findall(r"(?m)^botocore==\S+", broken)
    assert lock_problems(broken)[1] == [f"{pin}: no --hash=sha256"]


def test_a_range_that_no_longer_admits_the_pin_is_caught() -> None:
    pins, _ = lock_problems(LOCK.read_text())
    broken = re.sub(r"(?m)^boto3>=[^\s#]+", "boto3>=99,<100", RANGES.read_text())
    assert broken != RANGES.read_text()
    expected = f"boto3: the lock pins {pins['boto3']}, outside requirements.in's <100,>=99"
    assert range_problems(broken, pins) == [expected]
    assert range_problems(RANGES.read_text() + "pyyaml>=6\n", pins) == [
        "pyyaml: in requirements.in but not in the lock (run `make lock`)"
    ]


def make_rule(target: str) -> tuple[list[str], list[str]]:
    """(prerequisites, recipe lines) of one rule of the Makefile."""
    text = MAKEFILE.read_text().replace("\\\n", " ")
    match = re.search(rf"(?m)^{re.escape(target)}:(.*)\n((?:\t.*\n)*)", text)
    assert match, f"no rule for {target} in the Makefile"
    return match.group(1).split(), [line.strip() for line in match.group(2).splitlines()]


def test_setup_installs_the_lock_with_require_hashes_before_the_development_tools() -> None:
    prerequisites, recipe = make_rule("$(VENV)/.installed")
    # A change to any of the three files rebuilds the environment.
    assert {"requirements.txt", "requirements.in", "requirements-dev.txt"} <= set(prerequisites)
    installs = [line for line in recipe if " -m pip install " in line and "--upgrade pip" not in line]
    assert len(installs) == 2
    runtime, development = installs
    assert "--require-hashes -r requirements.txt" in runtime
    assert "-r requirements-dev.txt -c $(VENV)/runtime-constraints.txt" in development
    # The constraints are the lock's pins: what the tests run is what the deployment runs.
    assert any("requirements.txt > $(VENV)/runtime-constraints.txt" in line for line in recipe)
    # The development file names the ranges, never the hashed lock (which would demand hashes of every tool).
    dev = logical_lines((ROOT / "requirements-dev.txt").read_text())
    assert "-r requirements.in" in dev and "-r requirements.txt" not in dev


def test_make_lock_regenerates_the_lock_from_the_ranges_with_hashes() -> None:
    assert "lock" in make_rule(".PHONY")[0]
    _, recipe = make_rule("lock")
    compile_line = next(line for line in recipe if " pip compile " in line)
    for flag in ("--generate-hashes", "--universal", "--python-version 3.11", "--only-binary :all:", "requirements.in"):
        assert flag in compile_line
    assert recipe[-1].endswith("requirements.txt")


def test_the_constraints_the_makefile_derives_are_the_lock_pins() -> None:
    """The sed expression of the setup rule, run on the real lock, gives exactly name==version per pin."""
    import subprocess

    _, recipe = make_rule("$(VENV)/.installed")
    (sed,) = [line for line in recipe if line.startswith("sed ")]
    command = sed.split(" > ")[0]
    output = subprocess.run(["sh", "-c", command], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    pins, _ = lock_problems(LOCK.read_text())
    derived = {canonicalize_name(name): version for name, version in (line.split("==") for line in output.split())}
    assert derived == pins
