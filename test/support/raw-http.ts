// An HTTP/1.1 client that sends exactly the bytes it is given (request target, header values, body), for tests
// that must reach the server with what fetch and node:http refuse to send: invalid UTF-8, raw percent
// sequences, odd header values, malformed framing.
import { connect } from 'node:net';

export type RawRequest = {
  method: string;
  /** The request target as written on the request line (not normalised, not encoded). */
  target: string;
  /** Written in order as `name: value`, each value as latin1 bytes. */
  headers?: readonly (readonly [string, string])[];
  body?: Buffer | string;
  /** Leaves out the `Content-Length` this client adds for a body (when the test frames the body itself). */
  noContentLength?: boolean;
  /** Half-closes the connection once the request is written, as a client that gives up does. */
  endAfterWrite?: boolean;
};

export type RawResponse = {
  status: number;
  /** Lower-cased names; repeated headers joined with `, `. */
  headers: Record<string, string>;
  body: Buffer;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: any;
};

/** The request as bytes: request line, `Host`, `Connection: close`, the given headers, `Content-Length`, body. */
export function encodeRequest(request: RawRequest): Buffer {
  const body = typeof request.body === 'string' ? Buffer.from(request.body, 'utf8') : (request.body ?? Buffer.alloc(0));
  const lines = [`${request.method} ${request.target} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close'];
  for (const [name, value] of request.headers ?? []) lines.push(`${name}: ${value}`);
  if (!request.noContentLength && (body.length > 0 || request.method === 'POST')) lines.push(`Content-Length: ${body.length}`);
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), body]);
}

function dechunk(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = data.indexOf('\r\n', at);
    if (eol < 0) break;
    const size = Number.parseInt(data.subarray(at, eol).toString('latin1'), 16);
    if (!(size > 0)) break;
    parts.push(data.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

/** Parses a whole answer; null when the bytes hold no complete status line and header block. */
export function parseResponse(data: Buffer, method: string): RawResponse | null {
  const end = data.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const [statusLine = '', ...headerLines] = data.subarray(0, end).toString('latin1').split('\r\n');
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  if (!match) return null;
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  let body = method === 'HEAD' ? Buffer.alloc(0) : data.subarray(end + 4);
  if (headers['transfer-encoding']?.includes('chunked')) body = dechunk(body);
  else if (headers['content-length'] !== undefined) body = body.subarray(0, Number(headers['content-length']));
  const text = body.toString('utf8');
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: Number(match[1]), headers, body, text, json };
}

/**
 * Sends one request on a fresh connection (`Connection: close`) and reads the answer until the server closes.
 * @throws when the server closes without a complete answer, or sends nothing for `timeoutMs` (a hang).
 */
export function rawRequest(baseUrl: string, request: RawRequest, timeoutMs = 15_000): Promise<RawResponse> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    const chunks: Buffer[] = [];
    let failure: Error | null = null;
    socket.setTimeout(timeoutMs, () => {
      failure = new Error(`no answer within ${timeoutMs} ms to ${request.method} ${request.target.slice(0, 200)}`);
      socket.destroy();
    });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    // A reset after the answer (the server closed with part of a large body unread) loses nothing.
    socket.on('error', (error) => {
      failure ??= error;
    });
    socket.on('close', () => {
      const response = parseResponse(Buffer.concat(chunks), request.method);
      if (response) resolve(response);
      else reject(failure ?? new Error(`connection closed without an answer to ${request.method} ${request.target.slice(0, 200)}`));
    });
    socket.write(encodeRequest(request));
    if (request.endAfterWrite) socket.end();
  });
}
