"""The CloudFormation parameters that reach an IAM policy cannot rewrite it (issue 24, F9).

The home role's web-identity trust policy is JSON text with `${TenantId}`, `${Audience}`, `${ManagedIdentityObjectId}`
and the provider ARN substituted in (its condition keys are named after the issuer, so it cannot be a YAML mapping).
A `"` in one of them ends the JSON string and lets the rest of the value write policy: the audit reproduced an
`Audience` that turned the `sub` check into `StringNotEquals`. So every parameter used anywhere in a policy document
must have an `AllowedValues` list or an `AllowedPattern` whose every character is printable ASCII other than `"` and
`\\`; this is proven from the pattern's parse tree (an over-approximation of the characters it can ever accept), not by
trying samples. CloudFormation matches `AllowedPattern` with Java's regex and these tests with Python's: each pattern
must stay in the subset where the two agree (explicit classes, no `\\w`/`\\d`/`\\s`, no inline flags or lookarounds, no
possessive quantifiers, no class intersections).
"""

from __future__ import annotations

import json
import re
import re._constants as sre_constants  # the parse tree of a pattern: the only way to prove what it can accept
import re._parser as sre_parse
import warnings
from pathlib import Path
from typing import Any

import pytest

cfn_yaml = pytest.importorskip("cfnlint.decode.cfn_yaml")

AWS = Path(__file__).resolve().parents[2] / "infra" / "aws"
TEMPLATES = sorted(AWS.glob("*.yaml"))
POLICY_KEYS = {"PolicyDocument", "AssumeRolePolicyDocument"}
MAX_CHAR = 0x10FFFF

GUID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
MI = "5d1c0e2a-3b4f-4c5d-8e9f-0a1b2c3d4e5f"
APP_ID = "0b9f6c1e-7d2a-4e3b-9c4d-5e6f7a8b9c0d"
# The audit's payload: closes the aud value and the StringEquals block, and opens a StringNotEquals block that the
# template's own sub line then completes. It holds no space, so the old pattern [\x21-\x7e]{1,255} accepted it.
INJECTION = f'api://{APP_ID}"}},"StringNotEquals":{{"sts.windows.net/{GUID}/:x":"'
OLD_AUDIENCE_PATTERN = r"^([\x21-\x7e]{1,255})?$"


def load(path: Path) -> dict[str, Any]:
    template: dict[str, Any] = cfn_yaml.load(str(path))
    return template


# --------------------------------------------------------------------------------------------------------------------
# Which parameters reach a policy document


def sub_names(text: str) -> set[str]:
    """The names `${...}` of a Fn::Sub string refers to (not `${!literal}`, not pseudo parameters like AWS::Region)."""
    return {name.split(".")[0] for name in re.findall(r"\$\{([^!}][^}]*)\}", text) if "::" not in name}


def referenced(node: Any) -> set[str]:
    """Every logical name a template fragment refers to: Ref, GetAtt, Fn::Sub's `${...}` and its variables' values."""
    if isinstance(node, list):
        return set().union(*(referenced(item) for item in node))
    if not isinstance(node, dict):
        return set()
    names: set[str] = set()
    for key, value in node.items():
        if key == "Ref" and isinstance(value, str):
            names.add(value)
        elif key == "Fn::GetAtt":
            names.add(value[0] if isinstance(value, list) else value.split(".")[0])
        elif key == "Fn::Sub" and isinstance(value, str):
            names |= sub_names(value)
        elif key == "Fn::Sub":
            text, variables = value
            names |= (sub_names(text) - set(variables)) | referenced(list(variables.values()))
        else:
            names |= referenced(value)
    return names


def policy_documents(node: Any) -> list[Any]:
    if isinstance(node, list):
        return [doc for item in node for doc in policy_documents(item)]
    if not isinstance(node, dict):
        return []
    return [doc for key, value in node.items() for doc in ([value] if key in POLICY_KEYS else policy_documents(value))]


def parameters_in_policies(template: dict[str, Any]) -> set[str]:
    used = referenced(policy_documents(template.get("Resources", {})))
    return used & set(template.get("Parameters", {}))


# --------------------------------------------------------------------------------------------------------------------
# What a pattern can accept


Intervals = list[tuple[int, int]]


def normalise(intervals: Intervals) -> Intervals:
    merged: Intervals = []
    for lo, hi in sorted(intervals):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def complement(intervals: Intervals) -> Intervals:
    result: Intervals = []
    start = 0
    for lo, hi in normalise(intervals):
        if lo > start:
            result.append((start, lo - 1))
        start = hi + 1
    if start <= MAX_CHAR:
        result.append((start, MAX_CHAR))
    return result


def class_alphabet(items: list[tuple[Any, Any]]) -> Intervals:
    negate = bool(items) and items[0][0] is sre_constants.NEGATE
    chars: Intervals = []
    for op, av in items[1:] if negate else items:
        if op is sre_constants.LITERAL:
            chars.append((av, av))
        elif op is sre_constants.RANGE:
            chars.append(av)
        else:  # a category (\d, \w, \s) or anything unexpected: assume it can be any character
            chars.append((0, MAX_CHAR))
    return complement(chars) if negate else normalise(chars)


def alphabet(tree: Any) -> Intervals:
    """Every character the (sub)pattern can ever consume, as intervals of code points (an over-approximation:
    lookarounds are ignored, which can only widen it)."""
    chars: Intervals = []
    for op, av in tree:
        if op is sre_constants.LITERAL:
            chars.append((av, av))
        elif op is sre_constants.NOT_LITERAL:
            chars += complement([(av, av)])
        elif op is sre_constants.IN:
            chars += class_alphabet(av)
        elif op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, sre_constants.POSSESSIVE_REPEAT):
            chars += alphabet(av[2])
        elif op is sre_constants.SUBPATTERN:
            chars += alphabet(av[-1])
        elif op is sre_constants.BRANCH:
            for branch in av[1]:
                chars += alphabet(branch)
        elif op in (sre_constants.AT, sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            continue
        else:  # ANY, group references, anything else: any character
            chars.append((0, MAX_CHAR))
    return normalise(chars)


SAFE = normalise([(0x21, 0x21), (0x23, 0x5B), (0x5D, 0x7E)])  # printable ASCII without space, `"` and `\`


def unsafe_characters(pattern: str) -> Intervals:
    """The characters outside SAFE that the pattern may accept ([] when none can ever match)."""
    # Python warns of Java-style `&&` and nested classes; java_python_divergences names them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        admitted = alphabet(sre_parse.parse(pattern))
    outside = complement(SAFE)
    return normalise(
        [(max(lo, olo), min(hi, ohi)) for lo, hi in admitted for olo, ohi in outside if max(lo, olo) <= min(hi, ohi)]
    )


def java_python_divergences(pattern: str) -> list[str]:
    """Constructs whose meaning differs between Java's and Python's regex (or that only one of them has)."""
    problems: list[str] = []
    in_class = False
    previous = ""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            escaped = pattern[i + 1 : i + 2]
            if escaped.isalnum() and not re.match(r"x[0-9a-fA-F]{2}", pattern[i + 1 : i + 4]):
                problems.append(f"\\{escaped}")
            i += 4 if escaped == "x" else 2
            previous = "\\"
            continue
        if in_class:
            if char == "[":
                problems.append("[ inside a class (a nested class in Java)")
            elif pattern.startswith("&&", i):
                problems.append("&& inside a class (an intersection in Java)")
            elif char == "]":
                in_class = False
        elif char == "[":
            in_class = True
            if pattern.startswith("]", i + 1) or pattern.startswith("^]", i + 1):
                problems.append("] first in a class")
        elif pattern.startswith("(?", i):
            problems.append("(? (inline flags, lookarounds, named or non-capturing groups)")
        elif char == "+" and previous in ("*", "+", "?", "}"):
            problems.append("a possessive quantifier")
        previous = char
        i += 1
    return problems


def constraint_problems(name: str, parameter: dict[str, Any]) -> list[str]:
    if "AllowedValues" in parameter:
        return [
            f"{name}: allowed value {value!r} is not safe text"
            for value in parameter["AllowedValues"]
            if not re.fullmatch(r'[\x21\x23-\x5b\x5d-\x7e]*', str(value))
        ]
    pattern = parameter.get("AllowedPattern")
    if pattern is None:
        return [f"{name}: no AllowedPattern or AllowedValues"]
    problems = [f"{name}: {p} in AllowedPattern is read differently by Java" for p in java_python_divergences(pattern)]
    unsafe = unsafe_characters(pattern)
    if unsafe:
        shown = ", ".join(f"U+{lo:04X}" if lo == hi else f"U+{lo:04X}-U+{hi:04X}" for lo, hi in unsafe[:4])
        problems.append(f"{name}: AllowedPattern accepts characters that can break a policy: {shown}")
    default = parameter.get("Default")
    if default is not None and not re.fullmatch(pattern, str(default)):
        problems.append(f"{name}: the default {default!r} does not match AllowedPattern")
    return problems


# --------------------------------------------------------------------------------------------------------------------
# The templates


def test_the_parameters_that_reach_a_policy_are_found() -> None:
    """The walk finds every parameter of the policies, the provider ARN through the Sub variable ProviderArn too."""
    found = {path.name: parameters_in_policies(load(path)) for path in TEMPLATES}
    assert found == {
        "home-account.yaml": {
            "HomeRoleName",
            "MemberRoleName",
            "ExternalId",
            "TenantId",
            "Audience",
            "ManagedIdentityObjectId",
            "ExistingOidcProviderArn",
        },
        "member-account.yaml": {"HomeRoleArn"},
    }


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_parameter_in_a_policy_document_is_strict(path: Path) -> None:
    template = load(path)
    problems = [p for name in sorted(parameters_in_policies(template))
                for p in constraint_problems(name, template["Parameters"][name])]
    assert problems == []


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_parameter_at_all_is_strict(path: Path) -> None:
    """Not only today's policy parameters: one moved into a policy tomorrow is already safe."""
    template = load(path)
    problems = [p for name, parameter in template["Parameters"].items() for p in constraint_problems(name, parameter)]
    assert problems == []


def audience_pattern() -> str:
    pattern: str = load(AWS / "home-account.yaml")["Parameters"]["Audience"]["AllowedPattern"]
    return pattern


@pytest.mark.parametrize(
    "value",
    [f"api://{APP_ID}", "api://aws-iam-key-collector", "api://contoso.example/collector", "api://a", ""],
)
def test_the_audience_pattern_accepts_an_application_uri(value: str) -> None:
    assert re.fullmatch(audience_pattern(), value)


@pytest.mark.parametrize(
    "value",
    [
        INJECTION,
        f'api://{APP_ID}"',
        f"api://{APP_ID}\\",
        f"api://{APP_ID} x",
        f"api://{APP_ID}\n",  # Java's $ also matches before a final line break; a whole-string match does not
        f"api://{APP_ID}\u2028",
        "api://",
        "api:///x",
        f"https://{APP_ID}",
        APP_ID,
        "api://" + "a" * 202,
    ],
)
def test_the_audience_pattern_rejects_anything_else(value: str) -> None:
    assert not re.fullmatch(audience_pattern(), value)


def render_web_identity_trust(template: dict[str, Any], values: dict[str, str]) -> Any:
    """The web-identity trust policy as CloudFormation's Fn::Sub makes it: plain text substitution, then JSON."""
    trust = template["Resources"]["HomeRole"]["Properties"]["AssumeRolePolicyDocument"]
    text, variables = trust["Fn::If"][2]["Fn::Sub"]
    assert set(variables) == {"ProviderArn"}
    values = {"ProviderArn": f"arn:aws:iam::123456789012:oidc-provider/sts.windows.net/{GUID}/", **values}
    return json.loads(re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text))


def test_the_injection_rewrites_the_trust_policy_and_only_the_old_pattern_lets_it_through() -> None:
    """The broken copy: with the old Audience pattern the audit's payload is accepted and the rendered trust accepts
    any subject but the collector's; the template's pattern refuses it."""
    template = load(AWS / "home-account.yaml")
    good = render_web_identity_trust(template, {"TenantId": GUID, "ManagedIdentityObjectId": MI,
                                                "Audience": f"api://{APP_ID}"})
    assert good["Statement"][0]["Condition"] == {
        "StringEquals": {f"sts.windows.net/{GUID}/:aud": f"api://{APP_ID}", f"sts.windows.net/{GUID}/:sub": MI}
    }
    attacked = render_web_identity_trust(template, {"TenantId": GUID, "ManagedIdentityObjectId": MI,
                                                    "Audience": INJECTION})
    assert attacked["Statement"][0]["Condition"]["StringNotEquals"][f"sts.windows.net/{GUID}/:sub"] == MI
    assert f"sts.windows.net/{GUID}/:sub" not in attacked["Statement"][0]["Condition"]["StringEquals"]
    assert re.fullmatch(OLD_AUDIENCE_PATTERN, INJECTION)
    assert not re.fullmatch(audience_pattern(), INJECTION)


BROKEN_PATTERNS = {
    "the old Audience pattern": ("Audience", OLD_AUDIENCE_PATTERN, "can break a policy: U+0022, U+005C"),
    "the old provider ARN pattern": (
        "ExistingOidcProviderArn",
        r"^(arn:aws[a-z-]*:iam::\d{12}:oidc-provider/sts\.windows\.net/.+)?$",
        "\\d in AllowedPattern",
    ),
    "any character": ("TenantId", r"^.*$", "can break a policy: U+0000-U+0020"),
    "a negated class": ("TenantId", r"^[^ ]*$", "can break a policy"),
    "a word class": ("MemberRoleName", r"^[\w+=,.@-]{1,64}$", "\\w in AllowedPattern"),
    "a class intersection": ("HomeRoleName", r"^[a-z&&[^x]]{1,64}$", "&& inside a class"),
    "a possessive quantifier": ("HomeRoleName", r"^[a-z]++$", "a possessive quantifier"),
    "inline flags": ("HomeRoleName", r"(?i)^[a-z]{1,64}$", "(? (inline flags"),
    "a branch with a quote": ("ExternalId", r'^([a-z]{2,10}|x")?$', "can break a policy: U+0022"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_PATTERNS))
def test_a_lax_pattern_on_a_policy_parameter_is_caught(case: str) -> None:
    name, pattern, message = BROKEN_PATTERNS[case]
    template = load(AWS / "home-account.yaml")
    parameter = {**template["Parameters"][name], "AllowedPattern": pattern}
    parameter.pop("Default", None)
    problems = constraint_problems(name, parameter)
    assert any(message in p for p in problems), problems


def test_a_policy_parameter_without_a_pattern_is_caught() -> None:
    template = load(AWS / "home-account.yaml")
    del template["Parameters"]["TenantId"]["AllowedPattern"]
    assert "TenantId" in parameters_in_policies(template)
    assert constraint_problems("TenantId", template["Parameters"]["TenantId"]) == [
        "TenantId: no AllowedPattern or AllowedValues"
    ]
