// Drives Piston's official Node client, piston-client, unmodified (installed from npm
// into .cache/piston-client by tests/piston_client.py), against a server:
//
//   node client.mjs CLIENT_DIR SERVER_URL < cases.json
//
// cases.json: [{"language": ..., "code": ..., "config": {...}}, ...], each passed to
// client.execute(language, code, config) as a bot would. Prints one JSON object:
// {"runtimes": client.runtimes(), "results": [what each execute returned]}.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [dir, server] = process.argv.slice(2);
const entry = pathToFileURL(`${dir}/node_modules/piston-client/index.js`).href;
const { default: piston } = await import(entry);

const client = piston({ server });
const cases = JSON.parse(readFileSync(0, "utf8"));
const runtimes = await client.runtimes();
const results = [];
for (const { language, code, config } of cases) {
  results.push(await client.execute(language, code, config ?? {}));
}
console.log(JSON.stringify({ runtimes, results }));
