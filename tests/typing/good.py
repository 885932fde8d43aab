"""Uses the public API as the README shows; must pass a user's ``mypy --strict``."""

from __future__ import annotations

import sandboxkit as sk


async def main() -> None:
    r: sk.RunResult = await sk.Sandbox.run(
        "print(1)", language="python", stdin="x\n", limits=sk.Limits(time=2.0)
    )
    status: sk.Status = r.status
    raw: bytes = r.stdout_bytes
    print(status, raw, r.stdout, r.engine)
    async with sk.Sandbox.stream("print(1)") as events:
        async for ev in events:
            print(ev.kind, ev.data, ev.data_bytes)
    async for ev in sk.Sandbox.stream("print(1)", language="python"):
        print(ev.result)
    proc: sk.Process = await sk.Sandbox.start("print(input())")
    async with proc:
        await proc.write("hi\n")
        print((await proc.wait()).stdout)
    async with sk.Sandbox(language="python") as sb:
        done: sk.RunResult = await sb.run("print(2)", stdin=b"", limits=sk.Limits())
        entries: list[sk.FileEntry] = await sb.list_files()
        print(done.ok, [(e.path, e.type, e.size) for e in entries])
    async with sk.Sandbox(language="python", keep_state=True) as kernel:
        lost: bool = (await kernel.run("x = 1")).state_lost
        print(lost)
        async with sb.stream("print(3)") as events:
            async for ev in events:
                print(ev)
    async with sk.SandboxPool(languages=["python"], size=1) as pool:
        print((await pool.run("print(4)")).stdout)
    report = await sk.judge("print(3)", tests=[sk.TestCase(input="", expected="3\n")])
    verdict: sk.Verdict = report.verdict
    print(verdict)
