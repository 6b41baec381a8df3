// The REST client: calls the public API (Envoy's gRPC-JSON transcoder) with this tab's credential
// (an API key as `x-api-key`, or a signed-in person's token as `authorization: Bearer`), and turns
// error replies (google.rpc.Status bodies) into ApiError.

import { authHeaders } from './session.js';

export const GRPC_CODES = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND',
  'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED',
  'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED',
];

export class ApiError extends Error {
  constructor({ status = 0, code, message, reason = '', violations = [], requestId = '' }) {
    super(message);
    this.status = status;
    this.code = code;
    this.reason = reason;
    this.violations = violations;
    this.requestId = requestId;
  }

  get codeName() {
    if (Number.isInteger(this.code) && GRPC_CODES[this.code]) return GRPC_CODES[this.code];
    if (typeof this.code === 'string' && this.code) return this.code;
    return this.status ? `HTTP ${this.status}` : 'NETWORK';
  }

  get isAuth() {
    return this.isUnauthenticated || this.isForbidden;
  }

  get isUnauthenticated() {
    return this.status === 401 || this.code === 16;
  }

  get isForbidden() {
    return this.status === 403 || this.code === 7;
  }
}

export async function api(path, { method = 'GET', body, signal, auth = true, accept = 'application/json' } = {}) {
  const headers = { Accept: accept, ...(auth ? authHeaders() : {}) };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method, headers, signal, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError({ message: `cannot reach the server (${error.message})` });
  }
  if (!response.ok) throw await errorFromResponse(response);
  return response;
}

/** A google.rpc.Status body → ApiError (non-JSON bodies, e.g. from a proxy, keep their text). */
async function errorFromResponse(response) {
  const text = await response.text().catch(() => '');
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  const details = Array.isArray(body?.details) ? body.details : [];
  const ofType = (name) => details.find((detail) => String(detail?.['@type'] ?? '').endsWith(name));
  const violations = details.flatMap((detail) => detail?.field_violations ?? detail?.fieldViolations ?? []);
  const requestInfo = ofType('google.rpc.RequestInfo');
  return new ApiError({
    status: response.status,
    code: body?.code,
    message: String(body?.message || text.trim().slice(0, 300) || response.statusText || 'request failed'),
    reason: ofType('google.rpc.ErrorInfo')?.reason ?? '',
    violations,
    requestId: requestInfo?.request_id ?? requestInfo?.requestId ?? '',
  });
}
