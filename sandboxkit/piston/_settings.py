"""How the Piston wing runs: :class:`PistonSettings`, with Piston's own configuration names.

The limits keep the names, units and defaults of Piston's ``api/src/config.js``
(``PISTON_RUN_TIMEOUT`` and so on, milliseconds and bytes), so a deployment's settings
carry over as they are; as in Piston each is both the default of a request that gives
none and the cap of one that gives more (a value <= 0: no cap).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: the limits a request may set, and ``limit_overrides`` may change per language
LIMIT_NAMES = (
    "compile_timeout",
    "run_timeout",
    "compile_cpu_time",
    "run_cpu_time",
    "compile_memory_limit",
    "run_memory_limit",
    "max_process_count",
    "max_open_files",
    "max_file_size",
    "output_max_size",
)


class PistonSettings(BaseModel):
    """Piston's limits (its names, units and defaults) and what this server adds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    compile_timeout: int = Field(10_000, description="compile stage wall time, ms")
    run_timeout: int = Field(3_000, description="run stage wall time, ms")
    compile_cpu_time: int = Field(10_000, description="compile stage CPU time, ms")
    run_cpu_time: int = Field(3_000, description="run stage CPU time, ms")
    compile_memory_limit: int = Field(-1, description="compile stage memory, bytes (-1: none)")
    run_memory_limit: int = Field(-1, description="run stage memory, bytes (-1: none)")
    max_process_count: int = Field(64, description="processes and threads of a stage")
    max_open_files: int = Field(2048, description="open files of a stage")
    max_file_size: int = Field(10_000_000, description="largest file a stage writes, bytes")
    output_max_size: int = Field(
        1024, description="stdout and stderr kept per stage, bytes each; more ends the stage"
    )
    max_concurrent_jobs: int = Field(64, ge=1, description="jobs run at once; others wait")
    limit_overrides: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="per language (Piston's name), limits over the ones above, as "
        'PISTON_LIMIT_OVERRIDES: {"c++": {"run_timeout": 5000}}',
    )
    no_limit_memory_mb: int = Field(
        512,
        ge=16,
        le=65536,
        description="memory of a stage whose limit is -1 (Piston's 'no limit'): a "
        "sandbox always has one",
    )
    rate_limit_ms: int = Field(
        0,
        ge=0,
        description="one execute per client address per this many ms, as Piston's public "
        "instance allowed (200); more is answered 429. 0: no limit",
    )
    manage_packages: bool = Field(
        False,
        description="POST and DELETE /api/v2/packages build and remove language images; "
        "off, they are refused",
    )
    warm_languages: tuple[str, ...] = Field(("python",), description="languages kept warm")
    pool_size: int = Field(1, ge=0, le=64, description="warm sandboxes per language")

    @field_validator("limit_overrides")
    @classmethod
    def _known_limits(cls, value: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        for language, limits in value.items():
            unknown = sorted(set(limits) - set(LIMIT_NAMES))
            if unknown:
                raise ValueError(
                    f"limit_overrides[{language!r}] names {', '.join(unknown)}; "
                    f"known: {', '.join(LIMIT_NAMES)}"
                )
        return value

    def limit(self, language: str, name: str) -> int:
        """Limit ``name`` for ``language`` (Piston's name): its override, else the setting."""
        override = self.limit_overrides.get(language, {}).get(name)
        return override if override else int(getattr(self, name))
