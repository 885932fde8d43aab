'use strict';
// sandboxkit: a resident tsc. Started by the agent (`node THIS tsc ARGS...`, ARGS being the
// spec's compile arguments) in a TypeScript sandbox that has served no one yet, it loads
// the image's own tsc.js (the very code `tsc` runs, minus its last line, which would
// compile at once), compiles a small program in memory with the same options (node's
// JIT warms up, and the standard library's declaration files get parsed and bound once),
// says ready on descriptor 4 and blocks until the agent sends the run on descriptor 3
// (one JSON object: extra arguments and environment, then end of file). Then it does
// exactly what the last line of tsc.js does: `ts.executeCommandLine(ts.sys, ts.noop,
// args)`, so diagnostics, emitted files and exit status are tsc's own.
//
// The one thing carried over is the parsed standard library: `ts.createSourceFile` is
// wrapped so a declaration file of the image's TypeScript (or of sandboxkit's node types),
// asked for again with the same name, text and parse options, is the source file already
// parsed and bound, as TypeScript's language service shares source files between
// programs. A run with any argument beyond the spec's own parses everything afresh.
(function residentTsc() {
  const fs = require('fs');
  const path = require('path');
  const Module = require('module');

  const warmArgs = process.argv.slice(3); // the spec's compile argv without "tsc"
  const tscPath = locate(process.argv[2] || 'tsc');
  const LAST = 'ts.executeCommandLine(ts.sys, ts.noop, ts.sys.args);';
  const source = fs.readFileSync(tscPath, 'utf8');
  const at = source.lastIndexOf(LAST);
  if (at < 0) process.exit(70); // not the tsc.js this was written for: no resident tsc
  const loaded = new Module(tscPath, null);
  loaded.filename = tscPath;
  loaded.paths = Module._nodeModulePaths(path.dirname(tscPath));
  loaded._compile(source.slice(0, at) + 'module.exports = ts;' + source.slice(at + LAST.length), tscPath);
  const ts = loaded.exports;

  const shared = [path.dirname(tscPath) + path.sep, '/opt/sandboxkit/ts-types/'];
  const parsed = new Map();
  const createSourceFile = ts.createSourceFile;
  ts.createSourceFile = function (fileName, text, languageVersionOrOptions, setParentNodes, scriptKind) {
    if (!fileName.endsWith('.d.ts') || !shared.some((dir) => fileName.startsWith(dir))) {
      return createSourceFile.apply(this, arguments);
    }
    const o = typeof languageVersionOrOptions === 'object' ? languageVersionOrOptions : { languageVersion: languageVersionOrOptions };
    const key = [fileName, o.languageVersion, o.impliedNodeFormat, !!setParentNodes, scriptKind].join('\0');
    const hit = parsed.get(key);
    if (hit !== undefined && hit.text === text) return hit;
    const file = createSourceFile.apply(this, arguments);
    parsed.set(key, file);
    return file;
  };

  warmUp(ts, warmArgs);

  fs.writeSync(4, 'r'); // warm: the agent now tells the host the sandbox is ready
  fs.closeSync(4);
  const job = readJob();
  for (const key of Object.keys(process.env)) delete process.env[key];
  Object.assign(process.env, job.env);
  if (job.args.length > 0) {
    ts.createSourceFile = createSourceFile; // other options: nothing carried over
    parsed.clear();
  }
  ts.executeCommandLine(ts.sys, ts.noop, warmArgs.concat(job.args));

  function locate(name) {
    for (const dir of (process.env.PATH || '').split(':')) {
      const candidate = path.join(dir || '.', name);
      try {
        // bin/tsc is `require('../lib/tsc.js')`
        return path.resolve(path.dirname(fs.realpathSync(candidate)), '..', 'lib', 'tsc.js');
      } catch (e) {
        // not in this directory
      }
    }
    process.exit(70);
  }

  function warmUp(ts, args) {
    const parsedArgs = ts.parseCommandLine(args);
    const options = parsedArgs.options;
    const root = '/nonexistent/sandboxkit-warm-up.ts';
    const text = [
      'class Point { constructor(public x: number, public y: number) {} norm(): number { return Math.hypot(this.x, this.y); } }',
      'const points: Point[] = [1, 2, 3].map((i) => new Point(i, i * 2));',
      'const byName = new Map<string, number>(); for (const p of points) byName.set(String(p.x), p.norm());',
      'async function later(): Promise<string> { return `${points.length} ${[...byName.keys()].join(",")}`; }',
      'later().then((s) => console.log(s.toUpperCase()));',
      'export {};',
    ].join('\n');
    const host = ts.createCompilerHost(options);
    const getSourceFile = host.getSourceFile;
    host.getSourceFile = function (fileName, languageVersion) {
      if (fileName === root) return createSourceFile(root, text, languageVersion, false);
      return getSourceFile.apply(this, arguments);
    };
    const fileExists = host.fileExists;
    host.fileExists = (fileName) => fileName === root || fileExists(fileName);
    const program = ts.createProgram([root], options, host);
    ts.getPreEmitDiagnostics(program);
    program.emit(undefined, () => {});
  }

  function readJob() {
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
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  }
})();
