"""Mistakes a user's ``mypy --strict`` must catch; each line marked E: is one error."""

from __future__ import annotations

import sandboxkit as sk


async def main() -> None:
    await sk.Sandbox.run("print(1)", languag="python")  # E: call-arg
    await sk.Sandbox.run("print(1)", limits=5)  # E: arg-type
    r = await sk.Sandbox.run("print(1)")
    print(r.stdot)  # E: attr-defined
    await sk.Sandbox.run(42)  # E: arg-type
    async for ev in sk.Sandbox.stream("x", stdn="y"):  # E: call-arg
        print(ev)
    async with sk.Sandbox(language="python") as sb:
        await sb.run("x", language="cpp")  # E: arg-type
        await sb.run("x", pool=None)  # E: arg-type
        entries = await sb.list_files()
        print(entries[0]["path"])  # E: index
    async with sk.SandboxPool(languages=["python"]) as pool:
        await pool.run("x", lang="python")  # E: call-arg
