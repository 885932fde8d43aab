// The JavaScript kernel of one E2B code context (sandboxkit/e2b/_interpreter.py starts
// one node process per context and writes this file into the box).
//
// stdin: one JSON line per cell, {"token", "code", "env"}. The cell runs in this
// process's own global context (the process is the context: variables, functions and
// required modules stay between cells); what it logs goes to stdout/stderr as it is
// written. When the cell ends, stdout gets `${token}{"text"|"error"}\n` and stderr
// `${token}\n`: the server reads both up to the token, so it knows the cell's output
// is all in. The token is new for every cell and only this file's closure sees it, so
// output cannot end a cell early.
'use strict';

const vm = require('vm');
const util = require('util');
const path = require('path');
const Module = require('module');
const readline = require('readline');

// kept here: a cell replacing process.stdout.write or util.inspect changes not these
const writeOut = process.stdout.write.bind(process.stdout);
const writeErr = process.stderr.write.bind(process.stderr);
const inspect = util.inspect;
const hasOwn = Object.prototype.hasOwnProperty;

const DECLARATION = /^(\s*)(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*=/;
const FUNCTION = /^(\s*)(?:async\s+)?function\s*\*?\s*([A-Za-z_$][\w$]*)\s*\(/;
const KERNEL_FRAME = /^\s+at (?:new Script|Script\.runInThisContext|.*_jskernel\.js)/;
const IMPORT = /^\s*import\s+(?:(.+?)\s+from\s+)?(['"][^'"]+['"])\s*;?\s*$/;

globalThis.require = Module.createRequire(path.join(process.cwd(), '<cell>'));
globalThis.module = { exports: {} };
globalThis.exports = globalThis.module.exports;
globalThis.__dirname = process.cwd();
globalThis.__filename = path.join(process.cwd(), '<cell>');

// a promise rejected or an error thrown after its cell ended: shown, the kernel lives on
process.on('uncaughtException', (err) => writeErr(`${describe(err).traceback}\n`));
process.on('unhandledRejection', (err) => writeErr(`Unhandled rejection: ${describe(err).traceback}\n`));

function describe(err) {
  if (err !== null && typeof err === 'object' && typeof err.stack === 'string') {
    // the stack down to the cell's own frames (this file's are no business of the user's)
    const lines = err.stack.split('\n');
    const end = lines.findIndex((line) => KERNEL_FRAME.test(line));
    const traceback = (end < 0 ? lines : lines.slice(0, end)).join('\n');
    return { name: String(err.name || 'Error'), value: String(err.message ?? ''), traceback };
  }
  return { name: 'Error', value: inspect(err), traceback: `Uncaught ${inspect(err)}` };
}

// E2B shows a string result as it is, anything else as node's REPL would
function show(value) {
  return typeof value === 'string' ? value : inspect(value);
}

// `import x from 'm'` (ES module syntax, which a script cannot hold) as require()s
function requireOf(clause, source) {
  if (!clause) return `require(${source});`;
  const out = [];
  let rest = clause.trim();
  const star = rest.match(/^\*\s+as\s+([A-Za-z_$][\w$]*)$/);
  if (star) return `var ${star[1]} = require(${source});`;
  const named = rest.match(/\{([^}]*)\}\s*$/);
  if (named) {
    rest = rest.slice(0, named.index).replace(/,\s*$/, '').trim();
    const names = named[1].split(',').map((n) => n.trim()).filter(Boolean)
      .map((n) => n.replace(/^([\w$]+)\s+as\s+([\w$]+)$/, '$1: $2'));
    out.push(`var { ${names.join(', ')} } = require(${source});`);
  }
  if (rest) {
    out.push(`var ${rest} = ((m) => (m && m.__esModule ? m.default : m))(require(${source}));`);
  }
  return out.join('\n');
}

function splitImports(code) {
  const imports = [];
  const body = code.split('\n').map((line) => {
    const match = line.match(IMPORT);
    if (!match) return line;
    imports.push(requireOf(match[1], match[2]));
    return '';
  });
  return { imports, body: body.join('\n') };
}

function compiles(source) {
  try {
    new vm.Script(source);
    return true;
  } catch {
    return false;
  }
}

// A cell with top-level await, as an async function run now: its outermost
// declarations become globals (kept for the next cell, as a script's
// are) and its last line, when it is an expression, is returned as the cell's value.
function asAsync(body) {
  const lines = body.replace(/\s+$/, '').split('\n');
  const indents = lines.filter((l) => l.trim()).map((l) => l.match(/^\s*/)[0].length);
  const outer = Math.min(...indents);
  const hoisted = lines.map((line) => {
    const match = line.match(DECLARATION);
    if (!match || match[1].length !== outer) return line;
    return `${match[1]}${match[2]} =${line.slice(match[0].length)}`;
  });
  // function declarations are hoisted in the function: made globals from its start
  const functions = lines.map((line) => line.match(FUNCTION))
    .filter((match) => match && match[1].length === outer)
    .map((match) => `globalThis.${match[2]} = ${match[2]};`);
  hoisted.unshift(...functions);
  const last = hoisted[hoisted.length - 1].trim().replace(/;+$/, '');
  const head = hoisted.slice(0, -1).join('\n');
  const returning = `(async () => {\n${head}\nreturn (${last});\n})()`;
  if (!DECLARATION.test(lines[lines.length - 1]) && compiles(returning)) return returning;
  return `(async () => {\n${hoisted.join('\n')}\n})()`;
}

let count = 0;

async function evaluate(code) {
  count += 1;
  const filename = `<cell ${count}>`;
  const { imports, body } = splitImports(code);
  for (const statement of imports) vm.runInThisContext(statement, { filename });
  let script;
  try {
    script = new vm.Script(body, { filename });
  } catch (err) {
    if (!(err instanceof SyntaxError) || !/\bawait\b/.test(body)) throw err;
    return await vm.runInThisContext(asAsync(body), { filename });
  }
  return script.runInThisContext({ displayErrors: false });
}

async function run(cell) {
  const env = cell.env || {};
  const saved = {};
  for (const [name, value] of Object.entries(env)) {
    saved[name] = hasOwn.call(process.env, name) ? process.env[name] : undefined;
    process.env[name] = String(value);
  }
  let reply;
  try {
    const value = await evaluate(String(cell.code));
    reply = { text: value === undefined ? null : show(value) };
  } catch (err) {
    reply = { error: describe(err) };
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
  writeOut(`${cell.token}${JSON.stringify(reply)}\n`);
  writeErr(`${cell.token}\n`);
}

// cells one after the other, in the order they came
let queue = Promise.resolve();
readline.createInterface({ input: process.stdin, terminal: false }).on('line', (line) => {
  if (!line.trim()) return;
  const cell = JSON.parse(line);
  queue = queue.then(() => run(cell));
});
