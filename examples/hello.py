"""Hello from a sandbox: the smallest complete use of sandboxkit."""

import asyncio

import sandboxkit as sk


async def main() -> None:
    result = await sk.Sandbox.run(
        "import platform, os\n"
        "print(f'hello from {platform.node()}, uid {os.getuid()}, six times seven is', 6 * 7)\n"
    )
    print(result.stdout, end="")
    print(
        f"status={result.status} exit_code={result.exit_code} took {result.duration * 1000:.1f} ms"
    )
    await sk.aclose()


if __name__ == "__main__":
    asyncio.run(main())
