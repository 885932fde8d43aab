'use strict';
// sandboxkit: preloaded (`node -r THIS main.js`) by the agent in a sandbox that has served
// no one yet, so that node has started before the program arrives. It blocks here, before
// node loads the main module, until the agent sends the run on descriptor 3 (one JSON
// object: the program's arguments and environment, then end of file); node then loads
// main.js along its own entry path, as `node main.js ARGS` would: same argv, main module,
// stack frames and exit codes. Nothing of this file stays visible to the program.
(function waitForTheRun() {
  const fs = require('fs');
  // What a program's first use of its standard streams (net, tty), of readline (a
  // judge's usual input) and of console.log's formatting loads: ~10 ms of a hello
  // world's start. Node loads these builtins on that first use anyway, and loading
  // them ahead leaves nothing the program sees but process.moduleLoadList (builtins
  // are not in require.cache). The streams themselves are still made on first use, as
  // in a fresh node: making process.stdout puts descriptor 1 in non-blocking mode, and
  // a program that only calls fs.writeSync(1, ...) must find it blocking.
  require('net');
  require('tty');
  require('readline');
  require('util').inspect({ warm: [1, 'a'] });
  fs.writeSync(4, 'r'); // loaded: the agent now tells the host the sandbox is ready
  fs.closeSync(4);
  const chunks = [];
  const buf = Buffer.alloc(65536);
  for (;;) {
    let n;
    try {
      n = fs.readSync(3, buf, 0, buf.length, null);
    } catch (e) {
      if (e.code === 'EAGAIN' || e.code === 'EINTR') continue;
      process.exit(70);
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  fs.closeSync(3);
  if (chunks.length === 0) process.exit(70); // discarded: the run went another way
  const job = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  for (const key of Object.keys(process.env)) delete process.env[key];
  Object.assign(process.env, job.env);
  process.argv.push(...job.args);
  process.execArgv.length = 0; // as `node main.js` has it (child_process.fork uses it)
  delete require.cache[__filename];
})();
