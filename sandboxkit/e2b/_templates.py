"""E2B's templates as sandboxkit languages: each one a ``LanguageSpec`` (so its image is
generated, tagged and built like every other, and ``sandboxkit images`` lists it) in the
shape of E2B's base image: Debian with bash, coreutils, python3, node and git, and the
sandbox's uid (65534) named ``user`` with ``/home/user`` as its home, where commands start.

``base`` and ``code-interpreter-v1`` come built in; an operator adds a template from any
language (``sandboxkit e2b --template NAME=LANGUAGE`` or ``Settings.templates``), which
gets the same shape over that language's image.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .._errors import InvalidInput
from .._languages import PYTHON, LanguageSpec, get_language, register_language
from .._languages.python_data import PYTHON_DATA

E2B_USER = "user"
E2B_HOME = "/home/user"
SANDBOX_UID = 65534  # sandboxkit's program uid (``_container.SANDBOX_UID``), E2B's ``user`` here

# What E2B's base image adds to Debian (its Dockerfile: bash, coreutils, python3, node, git;
# pip, which agents reach for first)
SHAPE_PACKAGES = ("bash", "coreutils", "python3", "python3-pip", "nodejs", "git", "ca-certificates")
# Debian names uid 65534 ``nobody`` (home /nonexistent) and gid 65534 ``nogroup``: E2B's
# images name their user ``user`` with its home at /home/user, so ``whoami``, ``id``, ``~``
# and ``$HOME`` say what E2B's say. The home itself is a tmpfs of the box's own (the
# container's ``home``, following $HOME), this directory only its mount point.
USER_SETUP = (
    f"sed -i -e 's#^nobody:[^:]*:{SANDBOX_UID}:{SANDBOX_UID}:.*$"
    f"#{E2B_USER}:x:{SANDBOX_UID}:{SANDBOX_UID}:{E2B_USER}:{E2B_HOME}:/bin/bash#' /etc/passwd"
    f" && sed -i -e 's#^nogroup:\\([^:]*\\):{SANDBOX_UID}:#{E2B_USER}:\\1:{SANDBOX_UID}:#'"
    " /etc/group"
    f" && sed -i -e 's#^nobody:#{E2B_USER}:#' /etc/shadow"
    f" && mkdir -p {E2B_HOME} && chown {SANDBOX_UID}:{SANDBOX_UID} {E2B_HOME}"
    f" && id -un {SANDBOX_UID} | grep -qx {E2B_USER}"
    # root here holds no capability (see Sandbox(root=True)): apt's download helper would
    # drop to _apt, which takes CAP_SETGID, and fail; it stays root instead
    " && echo 'APT::Sandbox::User \"root\";' > /etc/apt/apt.conf.d/99sandboxkit-root"
)
_TEMPLATE_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def e2b_shape(spec: LanguageSpec, name: str) -> LanguageSpec:
    """``spec`` in the shape of E2B's base image, as language ``name``. Its own packages
    become the shared first layer (as the engine's cache has it from ``spec``'s image,
    numpy and all) and the shape's are a layer over it."""
    return spec.extend(
        name,
        base_packages=() if spec.base_packages else spec.packages,
        packages=SHAPE_PACKAGES,
        setup=(USER_SETUP,),
        env={
            **spec.env,
            "HOME": E2B_HOME,
            "USER": E2B_USER,
            "SHELL": "/bin/bash",
            # `pip install` works as on E2B's images (Debian's Python refuses it, PEP 668)
            "PIP_BREAK_SYSTEM_PACKAGES": "1",
        },
    )


@dataclass(frozen=True)
class Template:
    """One E2B template: the sandboxkit language its sandboxes run, and whether they
    hold the code interpreter's stateful Python kernel (``keep_state``)."""

    template_id: str
    spec: LanguageSpec
    keep_state: bool = False

    @property
    def language(self) -> str:
        return self.spec.name


BASE = Template("base", e2b_shape(PYTHON, "e2b-base"))
CODE_INTERPRETER = Template(
    "code-interpreter-v1", e2b_shape(PYTHON_DATA, "e2b-code-interpreter"), keep_state=True
)
BUILTIN_TEMPLATES: dict[str, Template] = {t.template_id: t for t in (BASE, CODE_INTERPRETER)}


def template_from(template_id: str, language: str | LanguageSpec) -> Template:
    """A template an operator names over a sandboxkit language (registered, or a spec):
    that language's image in E2B's shape. InvalidInput for a bad id or language."""
    if not isinstance(template_id, str) or not _TEMPLATE_ID.match(template_id):
        raise InvalidInput(
            f"template id {template_id!r}: lower-case letters, digits, '.', '_' and '-' "
            "(at most 64)"
        )
    spec = get_language(language) if isinstance(language, str) else language
    name = f"e2b-{spec.name}"
    if len(name) > 32:
        raise InvalidInput(f"language name {spec.name!r} is too long for a template (28 at most)")
    return Template(template_id, e2b_shape(spec, name), keep_state=False)


def parse_template_flag(value: str) -> tuple[str, str]:
    """``NAME=LANGUAGE`` (``sandboxkit e2b --template``)."""
    name, sep, language = value.partition("=")
    if not sep or not name.strip() or not language.strip():
        raise InvalidInput(f"--template {value!r}: give NAME=LANGUAGE, e.g. rust-box=rust")
    return name.strip(), language.strip()


def resolve(
    extra: Mapping[str, str | LanguageSpec | Template] | None = None,
) -> dict[str, Template]:
    """The server's templates: the built-in ones, then the operator's (which may replace
    a built-in id). Each template's language is registered, so sessions name it."""
    templates = dict(BUILTIN_TEMPLATES)
    for template_id, given in (extra or {}).items():
        if isinstance(given, Template):
            templates[template_id] = given
        else:
            templates[template_id] = template_from(template_id, given)
    for template in templates.values():
        register(template.spec)
    return templates


def register(spec: LanguageSpec) -> None:
    """Make ``spec`` usable by name (idempotent: the same spec twice is one language)."""
    try:
        if get_language(spec.name) == spec:
            return
    except InvalidInput:
        pass
    register_language(spec, replace=True)


def register_builtin() -> None:
    """Register the built-in templates' languages (``sandboxkit images`` lists them)."""
    for template in BUILTIN_TEMPLATES.values():
        register(template.spec)
