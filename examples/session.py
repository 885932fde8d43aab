"""A session: one sandbox for several runs; files and (with keep_state) variables persist."""

import asyncio

import sandboxkit as sk


async def main() -> None:
    async with sk.Sandbox(language="python", keep_state=True) as sb:
        await sb.write_file("in.csv", b"a,b\n1,2\n3,4\n")
        await sb.run("import csv\nrows = list(csv.DictReader(open('in.csv')))")
        r = await sb.run("total = sum(int(r['b']) for r in rows)\ntotal")
        print("total of column b:", r.stdout.strip())
        await sb.run("open('out.txt', 'w').write(f'{total}\\n')")
        print("out.txt:", (await sb.read_file("out.txt")).decode().strip())
        print("files:", [e.path for e in await sb.list_files()])

        # a program that asks questions, answered while it runs
        async with await sb.start("print('sum is', int(input('a? ')) + int(input('b? ')))") as proc:
            await proc.write("20\n22\n")
            await proc.close_stdin()
            result = await proc.wait()
        print(result.stdout.strip())
    await sk.aclose()


if __name__ == "__main__":
    asyncio.run(main())
