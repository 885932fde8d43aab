"""Output as it happens: chunks arrive while the program still runs."""

import asyncio
import time

import sandboxkit as sk

CODE = """
import time
for i in range(3):
    print(f"step {i}", flush=True)
    time.sleep(0.5)
"""


async def main() -> None:
    t0 = time.monotonic()
    async for ev in sk.Sandbox.stream(CODE):
        if ev.kind == "exit" and ev.result is not None:
            print(f"[{time.monotonic() - t0:5.2f}s] exit: {ev.result.status}")
        else:
            print(f"[{time.monotonic() - t0:5.2f}s] {ev.kind}: {ev.data!r}")
    await sk.aclose()


if __name__ == "__main__":
    asyncio.run(main())
