// Persistent Node.js REPL run inside the sandbox (passed to `node -e`).
//
// Protocol (see drivers.py): requests on stdin are "<token> <nbytes>\n" followed by nbytes
// of UTF-8 source; after running it we print "\n__SB_END_<token>__ <status>\n"
// (0 ok, 1 exception, 130 interrupted). All chunks share one vm context, so var/let/const,
// functions and require()d modules persist. A returned promise is awaited; top-level
// `await` is not supported (wrap it in an async IIFE). The event loop keeps running
// between executions, so timers fire and their output shows up in the next result.
'use strict';
const vm = require('vm');
const util = require('util');
const Module = require('module');

const sandbox = {
  console, process, Buffer, URL, URLSearchParams, TextEncoder, TextDecoder, AbortController,
  setTimeout, clearTimeout, setInterval, clearInterval, setImmediate, clearImmediate,
  queueMicrotask, structuredClone, performance,
  require: Module.createRequire(process.cwd() + '/'),
};
sandbox.global = sandbox;
const context = vm.createContext(sandbox);

let buffer = Buffer.alloc(0);
const queue = [];
let busy = false;
let interruptCurrent = null;

const write = (text) => process.stdout.write(text);
const describe = (err) => (err && err.stack) ? String(err.stack) : ('Uncaught ' + util.inspect(err));

// Keep the process alive on Ctrl-C: interrupts a pending await; a synchronous run is
// stopped by breakOnSigint instead (listeners are suspended while it runs).
process.on('SIGINT', () => { if (interruptCurrent) interruptCurrent(); });
process.on('uncaughtException', (err) => write(describe(err) + '\n'));
process.on('unhandledRejection', (err) => write('Unhandled rejection: ' + describe(err) + '\n'));

async function run(token, code) {
  let status = 0;
  try {
    let result = vm.runInContext(code, context, { filename: 'cell', breakOnSigint: true });
    if (result && typeof result.then === 'function') {
      const interrupted = new Promise((_, reject) => {
        interruptCurrent = () => reject(Object.assign(new Error('Interrupted'), { sbInterrupt: true }));
      });
      result = await Promise.race([result, interrupted]);
    }
    if (result !== undefined) write(util.inspect(result) + '\n');
  } catch (err) {
    if (err && (err.sbInterrupt || err.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED')) {
      status = 130;
      write('Interrupted\n');
    } else {
      status = 1;
      write(describe(err) + '\n');
    }
  } finally {
    interruptCurrent = null;
  }
  write(`\n__SB_END_${token}__ ${status}\n`);
}

async function pump() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const [token, code] = queue.shift();
    await run(token, code);
  }
  busy = false;
}

process.stdin.on('data', (chunk) => {
  buffer = Buffer.concat([buffer, chunk]);
  for (;;) {
    const nl = buffer.indexOf(10);
    if (nl < 0) break;
    const [token, size] = buffer.subarray(0, nl).toString().split(' ');
    const end = nl + 1 + Number(size);
    if (buffer.length < end) break;
    queue.push([token, buffer.subarray(nl + 1, end).toString('utf8')]);
    buffer = buffer.subarray(end);
  }
  pump();
});
process.stdin.on('end', () => process.exit(0));

write(`__SB_READY__ ${process.pid}\n`);
