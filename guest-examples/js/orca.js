// A thin helper over the componentize-js bindings of orca:plugin@0.1.0 (world `step-component`).
//
//   import { exportStep, StepError, log, http, state } from './orca.js';
//   export const step = exportStep((ctx) => ({ ok: true }));   // ctx.input/results/config are parsed JSON
//
// Throw `new StepError(message, { retryable, code })` to fail the step; a refused or failed host
// call throws a StepError too (retryable when transient); anything else thrown is a fatal error,
// code `exception`.
import { send } from 'orca:plugin/http@0.1.0';
import * as hostState from 'orca:plugin/state@0.1.0';
import { log as hostLog } from 'orca:plugin/log@0.1.0';

export class StepError extends Error {
  constructor(message, { retryable = false, code } = {}) {
    super(message);
    this.retryable = retryable;
    this.code = code;
  }
}

const parse = (text) => (text && text.trim() ? JSON.parse(text) : null);

// A WIT `result` error from an import arrives as an exception whose `payload` is the variant.
function hostError(kind, e) {
  const v = e && e.payload !== undefined ? e.payload : e;
  const tag = (v && v.tag) || 'error';
  const retryable = ['timeout', 'connection', 'unavailable'].includes(tag);
  const detail = v && typeof v.val === 'string' ? `: ${v.val}` : '';
  return new StepError(`${kind} ${tag}${detail}`, { retryable, code: `${kind}_${tag}` });
}

export function exportStep(fn) {
  return {
    run(context) {
      const ctx = {
        executionId: context.executionId,
        workflow: context.workflow,
        step: context.step,
        phase: context.phase, // 'run' | 'compensate'
        attempt: context.attempt,
        input: parse(context.input),
        results: parse(context.results) || {},
        config: parse(context.config) || {},
      };
      let value;
      try {
        value = fn(ctx);
      } catch (e) {
        const error = e instanceof StepError
          ? { message: e.message, retryable: e.retryable, code: e.code }
          : { message: `${(e && e.name) || 'Error'}: ${(e && e.message) || e}`, retryable: false, code: 'exception' };
        // componentize-js turns a thrown value into the `err` case: its `payload` if it has one.
        throw { payload: error };
      }
      return JSON.stringify(value === undefined ? null : value);
    },
  };
}

const emit = (level) => (message, fields = {}) =>
  hostLog(level, message, Object.entries(fields).map(([k, v]) => [k, String(v)]));
export const log = { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };

const decoder = new TextDecoder();
const encoder = new TextEncoder();

export const http = {
  request(method, url, { body, headers = [], timeoutMs } = {}) {
    let bytes;
    if (body !== undefined) {
      bytes = encoder.encode(JSON.stringify(body));
      headers = [...headers, ['content-type', 'application/json']];
    }
    let r;
    try {
      r = send({ method, url, headers, body: bytes, timeoutMs });
    } catch (e) {
      throw hostError('http', e);
    }
    if (r.status >= 400) {
      throw new StepError(`HTTP ${r.status} from ${url}`, {
        retryable: r.status >= 500 || r.status === 408 || r.status === 429, code: 'http_status',
      });
    }
    return { status: r.status, headers: r.headers, text: () => decoder.decode(r.body), json: () => JSON.parse(decoder.decode(r.body)) };
  },
  get: (url, opts) => http.request('GET', url, opts),
  postJson: (url, value, opts) => http.request('POST', url, { ...opts, body: value }),
};

// `scope` is 'execution' or 'tenant'.
function stateCall(f) {
  try {
    return f();
  } catch (e) {
    throw hostError('state', e);
  }
}
export const state = {
  getJson(scope, key) {
    const raw = stateCall(() => hostState.get(scope, key));
    return raw === undefined || raw === null ? null : JSON.parse(decoder.decode(raw));
  },
  setJson: (scope, key, value, ttlSeconds) =>
    stateCall(() => hostState.set(scope, key, encoder.encode(JSON.stringify(value)), ttlSeconds)),
  delete: (scope, key) => stateCall(() => hostState.delete(scope, key)),
  listKeys: (scope, prefix = '') => stateCall(() => hostState.listKeys(scope, prefix)),
};
