"""Pure: language spec → Dockerfile text → content-addressed image tag. No I/O.

pip packages are installed in a separate builder stage and only their files are copied
into the image, so a CA bundle handed to pip (see ``_images.build_ca_bundle``) exists in
that throw-away stage alone and never in a layer of the image users run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shlex
from dataclasses import dataclass
from importlib import resources

from .._backends.seccomp import PROFILE_DIGEST
from .._languages import LanguageSpec, language_env
from .._layout import mount_points

BASE_SUITE = "bookworm"  # the Debian release nearly every language image stands on


def base_image(suite: str = BASE_SUITE) -> str:
    """The base image of a Debian ``suite`` (bootstrapped from the host's mirror)."""
    return f"sandboxkit/base:{suite}"


BASE_IMAGE = base_image()
AGENT_DIR = "/opt/sandboxkit"  # gets the build context's agent/ directory (agent_files)
AGENT_PATH = f"{AGENT_DIR}/agent.py"  # the entry, sandboxkit/agent/__main__.py
# Compiled at build: a script given to python3 is recompiled at every start (~7 ms of CPU
# per sandbox, a fair share of the container churn that bounds one-shot throughput). The
# container runs ``python3 -I AGENT_PYC``; the entry puts AGENT_LIB on sys.path.
AGENT_PYC = f"{AGENT_DIR}/agent.pyc"
AGENT_LIB = f"{AGENT_DIR}/lib"  # the agent package and the wire protocol, byte-compiled
VERSION_PATH = "/opt/sandboxkit/version"
PRESTART_PATH = f"{AGENT_DIR}/prestart.json"  # read by sandboxkit/agent/_prestart.py
PRESTART_JS = f"{AGENT_LIB}/sandboxkit/agent/prestart.js"
PRESTART_TSC = f"{AGENT_LIB}/sandboxkit/agent/prestart_tsc.js"
PRESTART_RB = f"{AGENT_LIB}/sandboxkit/agent/prestart.rb"
# the ruby preload is started as `ruby main.rb` in this directory, where main.rb links
# to it: $0, Process.argv0 and /proc/self/cmdline are then those of `ruby main.rb`
PRESTART_RB_DIR = f"{AGENT_DIR}/ruby"
LAUNCHER_SOURCE = f"{AGENT_LIB}/sandboxkit/agent/launch.c"
LAUNCHER_PATH = f"{AGENT_DIR}/launch"  # the agent's _boot.LAUNCHER_FILE
LOOKUPS_TOOL = f"{AGENT_LIB}/sandboxkit/agent/_lookups.py"
LOOKUPS_PATH = f"{AGENT_DIR}/lookups"  # the agent's _lookups.LIST_FILE
SAMPLE_DIR = "/tmp/sandboxkit-sample"
JAVAC_SOURCE = f"{AGENT_LIB}/sandboxkit/agent/SandboxkitJavac.java"
JAVAC_CLASSES = f"{AGENT_DIR}/java"  # SandboxkitJavac.class, compiled at build
CA_FILE = "sandboxkit-build-ca.pem"
FORMAT_VERSION = "2"
# in every image: the agent's interpreter, and an NSS module resolving localhost
ALWAYS = ("python3", "libnss-myhostname")


# the image's sandboxkit package holds the agent and the protocol only: not the host's
# __init__ (which imports the SDK's dependencies)
_IMAGE_PACKAGE_INIT = b'"""The in-sandbox copy of sandboxkit: the agent and the wire protocol."""\n'


def agent_files() -> dict[str, bytes]:
    """The agent as laid out under AGENT_DIR (all of it is part of the tag's hash)."""
    package = resources.files("sandboxkit")
    agent = package.joinpath("agent")
    files = {
        "agent.py": agent.joinpath("__main__.py").read_bytes(),
        "lib/sandboxkit/__init__.py": _IMAGE_PACKAGE_INIT,
        "lib/sandboxkit/_protocol.py": package.joinpath("_protocol.py").read_bytes(),
    }
    for entry in sorted(agent.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".py", ".js", ".rb", ".java", ".c")):
            files[f"lib/sandboxkit/agent/{entry.name}"] = entry.read_bytes()
    return files


@dataclass(frozen=True)
class BuildContext:
    """Everything an image build sends to the engine, and the tag it is known by."""

    dockerfile: str
    files: dict[str, bytes]
    tag: str


def _pip_stage(spec: LanguageSpec, with_ca: bool) -> list[str]:
    """A builder stage installing the pip packages under /opt/pip-root (copied later)."""
    pip = " ".join(shlex.quote(p) for p in sorted(spec.pip_packages))
    install = (
        "python3 -m pip install --no-cache-dir --disable-pip-version-check "
        f"--break-system-packages --root /opt/pip-root {pip}"
    )
    lines = ["FROM toolchain AS pip"]
    if with_ca:
        ca = f"/tmp/{CA_FILE}"
        lines += [
            f"COPY {CA_FILE} {ca}",
            f"RUN PIP_CERT={ca} {install} \\\n && rm -f {ca}",
        ]
    else:
        lines.append(f"RUN {install}")
    return lines


def prestart_config(spec: LanguageSpec) -> str | None:
    """What the agent pre-starts in each sandbox of ``spec`` (see agent/_prestart.py):
    the runtime's argv, the run argv it stands for, and the environment it starts with."""
    if spec.prestart is None:
        return None
    conf: dict[str, object] = {"env": language_env(spec)}
    run = list(spec.run)
    if spec.prestart == "node":
        conf["argv"] = [run[0], "-r", PRESTART_JS, *run[1:]]
        conf["run"] = run
    elif spec.prestart == "ruby":
        # `ruby main.rb` itself, started where main.rb is the preload (a link to it)
        conf["argv"] = run
        conf["run"] = run
        conf["cwd"] = PRESTART_RB_DIR
        conf["orders"] = "fields"  # no JSON parser in a plain ruby (see prestart.rb)
    elif spec.prestart in ("tsc", "javac"):
        # a resident compiler: it stands for the compile step, exactly as the spec has it
        if spec.compile is None:
            raise ValueError(f"{spec.name}: prestart {spec.prestart!r} needs a compile step")
        build = list(spec.compile)
        if spec.prestart == "tsc":
            conf["argv"] = ["node", PRESTART_TSC, *build]
        else:
            jvm = [a[2:] for a in build[1:] if a.startswith("-J")]
            javac = [a for a in build[1:] if not a.startswith("-J")]
            conf["argv"] = ["java", *jvm, "-cp", JAVAC_CLASSES, "SandboxkitJavac", *javac]
        conf["run"] = build
    return json.dumps(conf, sort_keys=True)


def render(spec: LanguageSpec, base: str | None = None, *, with_ca: bool = False) -> str:
    """The Dockerfile for ``spec``; deterministic, so equal specs give equal text.

    ``with_ca``: pip trusts a CA bundle copied into the build context (only used when
    the spec has pip packages).
    """
    extra = {"python3-pip"} if spec.pip_packages else set()
    lines = [
        f"# generated by sandboxkit (format {FORMAT_VERSION}) for language {spec.name!r}",
        f"FROM {base or base_image(spec.suite)} AS toolchain",
        "ENV DEBIAN_FRONTEND=noninteractive",
    ]
    layers = [sorted({*ALWAYS, *extra, *spec.packages})]
    if spec.base_packages:
        # the shared runtime first, rendered exactly as an image holding only it (a JVM
        # image's own layer), so the engine's build cache reuses that layer
        shared = sorted({*ALWAYS, *spec.base_packages})
        layers = [shared, sorted({*extra, *spec.packages} - set(shared))]
    for packages in layers:
        if packages:
            lines.append(
                "RUN apt-get update \\\n"
                f" && apt-get install -y --no-install-recommends {' '.join(packages)} \\\n"
                " && rm -rf /var/lib/apt/lists/*"
            )
    for step in spec.setup:
        lines.append(f"RUN {step}")
    if spec.pip_packages:
        lines += _pip_stage(spec, with_ca)
        lines += ["FROM toolchain", "COPY --from=pip /opt/pip-root/ /"]
    if spec.version_command:
        # records the toolchain's version, and fails the build if the toolchain is broken
        cmd = " ".join(shlex.quote(a) for a in spec.version_command)
        lines.append(
            f"RUN mkdir -p {VERSION_PATH.rpartition('/')[0]} \\\n"
            f" && {cmd} > {VERSION_PATH} 2>&1 || {{ cat {VERSION_PATH}; exit 1; }}"
        )
    dirs, files = mount_points(language_env(spec))
    prestart = prestart_config(spec)
    if prestart is not None:
        lines.append(
            f"RUN mkdir -p {AGENT_DIR} && printf '%s' {shlex.quote(prestart)} > {PRESTART_PATH}"
        )
    lines += [
        f"COPY agent/ {AGENT_DIR}/",
        f"RUN python3 -I -m compileall -q {AGENT_LIB} \\\n"
        f' && python3 -I -c "import py_compile; '
        f"py_compile.compile('{AGENT_PATH}', cfile='{AGENT_PYC}', doraise=True)\" \\\n"
        # every mount point (_layout.mount_points): none is made as a sandbox starts
        f" && mkdir -p {' '.join(dirs)} && chmod 1777 /work && touch {' '.join(files)} \\\n"
        # a sandbox without network gets an empty /etc/hosts from the engine: resolve
        # localhost (and the container's own name) without it, as every Judge0 box does
        " && sed -i 's/^hosts:.*/hosts:          files myhostname dns/' /etc/nsswitch.conf",
    ]
    if spec.preload != "python":
        # the launcher (agent/_launch.py), where the image has a C compiler: its programs
        # start by a fork of ~1 MB instead of the agent's ~12 MB (Python runs inline)
        lines.append(
            "RUN if command -v cc >/dev/null 2>&1; "
            f"then cc -O2 -o {LAUNCHER_PATH} {LAUNCHER_SOURCE}; fi"
        )
    if spec.sample is not None:
        lines.append(_lookups_step(spec, spec.sample))
    if spec.prestart == "javac":
        lines.append(f"RUN javac -d {JAVAC_CLASSES} {JAVAC_SOURCE}")
    if spec.prestart == "ruby":
        script = spec.run[1] if len(spec.run) > 1 else "main.rb"
        lines.append(
            f"RUN mkdir -p {PRESTART_RB_DIR} && ln -s {PRESTART_RB} {PRESTART_RB_DIR}/{script}"
        )
    lines += [
        "WORKDIR /work",
        f'LABEL org.sandboxkit.language="{spec.name}" org.sandboxkit.format="{FORMAT_VERSION}"',
    ]
    return "\n".join(lines) + "\n"


def _lookups_step(spec: LanguageSpec, sample: str) -> str:
    """The build step that compiles ``sample`` (where the language compiles) and runs it
    as a run would (the language's environment, its commands) and records the files they
    looked up, for every new sandbox to look up ahead (agent/_lookups.py). What they left
    in /tmp goes."""
    env = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(language_env(spec).items()))
    steps = [spec.run] if spec.compile is None else [spec.compile, spec.run]
    # one recording of both: the shell finds each command on PATH as the agent does
    script = " && ".join(shlex.join(argv) for argv in steps)
    return (
        f"RUN mkdir -p {SAMPLE_DIR} && cd {SAMPLE_DIR} \\\n"
        # base64: a Dockerfile instruction ends at the first newline
        f" && echo {base64.b64encode(sample.encode()).decode()} | base64 -d"
        f" > {shlex.quote(spec.source_file)} \\\n"
        f" && env -i {env} python3 -I {LOOKUPS_TOOL} record {LOOKUPS_PATH} -- \\\n"
        f"    sh -c {shlex.quote(script)} < /dev/null \\\n"
        " && cd / && rm -rf /tmp/* /tmp/.[!.]*"
    )


def build_context(
    spec: LanguageSpec, base: str | None = None, *, ca_bundle: bytes | None = None
) -> BuildContext:
    """Dockerfile, copied files and the tag: ``sandboxkit/<name>:<hash of all of it>``
    and of the seccomp profile its containers run under.

    ``ca_bundle`` is ignored unless the spec has pip packages: images that install
    nothing from PyPI neither carry it nor change tag with it.
    """
    with_ca = bool(spec.pip_packages) and ca_bundle is not None
    dockerfile = render(spec, base, with_ca=with_ca)
    files = {f"agent/{name}": data for name, data in agent_files().items()}
    if with_ca:
        assert ca_bundle is not None
        files[CA_FILE] = ca_bundle
    digest = hashlib.sha256(dockerfile.encode())
    # the seccomp profile every container of the image runs under: part of the sandbox
    digest.update(b"\0seccomp\0" + PROFILE_DIGEST.encode())
    for name in sorted(files):
        digest.update(b"\0" + name.encode() + b"\0" + files[name])
    return BuildContext(dockerfile, files, f"sandboxkit/{spec.name}:{digest.hexdigest()[:16]}")
