// graphile-worker 0.18 draining N no-op jobs: the peer of bench/peer_throughput.py.
//
//   node drain.mjs <connection string of a fresh database> <N> [concurrency] [local queue size]
//
// Installs graphile-worker's schema, inserts N no-op jobs in one statement (graphile_worker.add_jobs),
// then runs one worker pool (concurrency 24 by default) with its batched local queue and batched
// completions (completeJobBatchDelay 0) until all N have run. The clock runs from the first job handed
// to a task function to the moment the pool has stopped, which is after its completion batcher wrote
// the last completions back. Prints one JSON line; checks that the jobs table is empty at the end.
import { Logger, run, runMigrations } from "graphile-worker";
import pg from "pg";

const [connectionString, nArg, concArg, queueArg] = process.argv.slice(2);
const n = Number(nArg);
const concurrentJobs = Number(concArg ?? 24);
const localQueueSize = Number(queueArg ?? 500);
if (!connectionString || !(n > 0)) {
  console.error("usage: node drain.mjs <database url> <jobs> [concurrency] [local queue size]");
  process.exit(2);
}
process.env.NO_LOG_SUCCESS = "1";

// graphile-worker's Logger wraps a log function; build one that only prints warnings and errors.
const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`[graphile ${level}] ${message}`);
});

const preset = {
  worker: {
    connectionString,
    concurrentJobs,
    maxPoolSize: Math.max(10, concurrentJobs + 2),
    localQueue: { size: localQueueSize },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
    pollInterval: 2000,
  },
};

await runMigrations({ preset, logger });

const client = new pg.Client({ connectionString });
await client.connect();
const inserted = Date.now();
await client.query(
  `select graphile_worker.add_jobs(array(
     select row('noop', '{}'::json, null, null, null, null, null, null)::graphile_worker.job_spec
     from generate_series(1, $1::int)))`,
  [n],
);
const insertMs = Date.now() - inserted;

let started = 0n;
let ran = 0;
let resolveAll;
const allRan = new Promise((r) => (resolveAll = r));
const taskList = {
  noop: async () => {
    if (ran === 0) started = process.hrtime.bigint();
    ran += 1;
    if (ran === n) resolveAll();
  },
};

const runner = await run({ preset, logger, taskList, noHandleSignals: true });
await allRan;
await runner.stop();
const secs = Number(process.hrtime.bigint() - started) / 1e9;

const left = Number((await client.query("select count(*) from graphile_worker._private_jobs")).rows[0].count);
await client.end();
if (left !== 0 || ran !== n) {
  console.error(`graphile-worker left ${left} jobs in the table after running ${ran} of ${n}`);
  process.exit(1);
}
console.log(JSON.stringify({ jobs: n, ran, secs, rate: n / secs, concurrentJobs, localQueueSize, insertMs }));
