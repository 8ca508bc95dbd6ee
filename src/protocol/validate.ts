/**
 * Validation at the edge: every inbound frame goes through `parseClientMessage` (JSON, then the
 * schema of its `type`), outbound messages through `validateServerMessage` in tests and dev mode.
 *
 * Routing peeks at `type` and runs only that message's compiled validator, so a bad message is
 * reported against the schema it was meant to match ("/filter/vms/0 must match pattern ...") rather
 * than as "matches none of 16 alternatives", and the cost is one small validator per frame.
 */
import type { AnySchemaObject, ValidateFunction } from 'ajv';
import type {
  ClientMessage,
  CommandAction,
  CommandMessage,
  ErrorDetail,
  ErrorMessage,
  RequestId,
  ResultFailure,
  ServerMessage,
} from '../generated/schema-types.js';
import { withoutStack } from '../errors.js';
import { clip, describeErrors, MAX_DETAIL_TEXT, MAX_ERROR_TEXT, summarize } from './error-details.js';
import { messageSchemas } from './messages.js';
import { CLIENT_MESSAGE_SCHEMA, SERVER_MESSAGE_SCHEMA, schemaRegistry } from './schemas.js';

/** Why a message was refused; sent to the client as an `error` (or a `result`) with code invalid_message. */
export interface InvalidMessage {
  code: 'invalid_message';
  /** One line for people: the first problem, and how many more there are. */
  message: string;
  /** Every problem (at most MAX_ERROR_DETAILS), each at the JSON Pointer of its field. */
  details: ErrorDetail[];
}

/** A refused message: why, and what of it could be read so the answer can be correlated. */
export interface Refusal {
  ok: false;
  error: InvalidMessage;
  /** The message's id when it had a well-formed one. */
  id?: RequestId;
  /** The message's `type` when it named a known one (a refused `command` is answered with a `result`). */
  type?: string;
}

export type ValidationResult<M> = { ok: true; message: M } | Refusal;

export type ParseResult = ValidationResult<ClientMessage>;

/** Parse and validate one inbound text frame. Never throws once the validators are compiled. */
export function parseClientMessage(text: string): ParseResult {
  let value: unknown;
  try {
    value = withoutStack(() => JSON.parse(text) as unknown);
  } catch (error) {
    return notJson('message', error);
  }
  return validateClientMessage(value);
}

/**
 * The refusal of a text that is not JSON. The parser's reason without V8's echo of the text
 * (`Unexpected token 'a', "abc" is not valid JSON`), which repeated the verdict and the client's bytes.
 */
function notJson(what: string, error: unknown): Refusal {
  const reason = error instanceof SyntaxError ? error.message.replace(/, (?:\.\.\.)?".*"(?:\.\.\.)? is not valid JSON$/s, '') : String(error);
  return invalid(`${what} is not valid JSON`, [{ path: '', message: `is not valid JSON: ${reason}` }]);
}

/**
 * Inbound messages that passed validateClientMessage, by identity: a handler behind a parser (the
 * WebSocket and HTTP entrances) checks this instead of validating a second time, while a message built
 * elsewhere (the demo driver, a fleet host's Redis stream, a copy) is a new object and gets validated.
 */
const validatedMessages = new WeakSet<object>();

/** Validate an already parsed inbound message. Never throws. */
export function validateClientMessage(value: unknown): ParseResult {
  const result = validateAgainstUnion<ClientMessage>(value, CLIENT_MESSAGE_SCHEMA, 'client');
  if (result.ok) validatedMessages.add(result.message);
  return result;
}

/** This very object passed validateClientMessage (see validatedMessages). */
export function wasValidated(message: object): boolean {
  return validatedMessages.has(message);
}

/** Validate an outbound message (tests, dev mode): the server must never send what the schemas forbid. */
export function validateServerMessage(value: unknown): ValidationResult<ServerMessage> {
  return validateAgainstUnion<ServerMessage>(value, SERVER_MESSAGE_SCHEMA, 'server');
}

export function isClientMessage(value: unknown): value is ClientMessage {
  return validateClientMessage(value).ok;
}

export function isServerMessage(value: unknown): value is ServerMessage {
  return validateServerMessage(value).ok;
}

/** Where an HTTP command (`POST /v1/vms/{vm}/jobs/{job}/{action}`) points; taken from the URL. */
export interface HttpCommandTarget {
  vm: string;
  job: string;
  action: string;
}

/** Fields of a `command` that an HTTP command takes from its URL, never from its body. */
const URL_FIELDS = ['type', 'vm', 'job', 'action'] as const;

/**
 * The HTTP mirror of `command`: the body (empty, or a JSON object with the command's optional fields
 * and an optional `id`) plus the URL's target, validated as the `command` message it stands for, so
 * both entrances give the same answers. `fallbackId` is used when the body has no `id`.
 */
export function parseHttpCommand(target: HttpCommandTarget, body: string, fallbackId: RequestId): ValidationResult<CommandMessage> {
  let fields: unknown = {};
  if (body.trim() !== '') {
    try {
      fields = withoutStack(() => JSON.parse(body) as unknown);
    } catch (error) {
      return notJson('body', error);
    }
  }
  if (!isPlainObject(fields)) {
    return invalid('body must be a JSON object', [{ path: '', message: `must be a JSON object, not ${kindOf(fields)}` }]);
  }
  const inUrl = URL_FIELDS.filter((key) => key in fields);
  if (inUrl.length > 0) {
    const details = inUrl.map((key) => ({ path: `/${key}`, message: 'is not allowed in the body (it comes from the URL)' }));
    return invalid(`invalid command: ${summarize(details)}`, details, wellFormedId(fields.id), 'command');
  }
  const action = target.action as CommandAction;
  const result = validateClientMessage({ id: fallbackId, ...fields, type: 'command', vm: target.vm, job: target.job, action });
  return result as ValidationResult<CommandMessage>;
}

/**
 * The answer to a refused message: a `result` (ok=false, invalid_message) for a `command` with a
 * readable id, so a client waiting for that command's result gets it; an `error` otherwise.
 */
export function answerToRefusal(refusal: Refusal): ErrorMessage | ResultFailure {
  if (refusal.type === 'command' && refusal.id !== undefined) {
    return { type: 'result', id: refusal.id, ok: false, error: refusal.error };
  }
  return { type: 'error', ...(refusal.id !== undefined ? { id: refusal.id } : {}), ...refusal.error };
}

/**
 * Compile every message validator now rather than on first use: call it at startup so a broken or
 * missing schema fails the start, and the first client does not pay for compilation.
 */
export function precompileValidators(): void {
  routes(CLIENT_MESSAGE_SCHEMA);
  routes(SERVER_MESSAGE_SCHEMA);
}

interface Route {
  validate: ValidateFunction;
  schemaFile: string;
}

const routeTables = new Map<string, Map<string, Route>>();

function routes(unionFile: string): Map<string, Route> {
  let table = routeTables.get(unionFile);
  if (!table) {
    const registry = schemaRegistry();
    table = new Map([...messageSchemas(unionFile)].map(([type, schemaFile]) => [type, { validate: registry.validator(schemaFile), schemaFile }]));
    routeTables.set(unionFile, table);
  }
  return table;
}

function validateAgainstUnion<M>(value: unknown, unionFile: string, side: 'client' | 'server'): ValidationResult<M> {
  if (!isPlainObject(value)) {
    return invalid('a message must be a JSON object', [{ path: '', message: `must be a JSON object with a "type", not ${kindOf(value)}` }]);
  }
  // ajv's validators are type guards; keep an un-narrowed alias to read fields after a failure.
  const fields: Record<string, unknown> = value;
  const { type } = fields;
  const table = routes(unionFile);
  const route = typeof type === 'string' ? table.get(type) : undefined;
  if (!route) {
    const known = [...table.keys()].map((t) => JSON.stringify(t)).join(', ');
    const message =
      type === undefined
        ? 'is required'
        : typeof type === 'string'
          ? `unknown ${side} message type ${JSON.stringify(type)}; must be one of ${known}`
          : `must be a string, one of ${known}`;
    return invalid(`invalid message: /type ${message}`, [{ path: '/type', message }], wellFormedId(fields.id));
  }
  if (route.validate(value)) return { ok: true, message: value as M };
  const { validate, schema } = narrowToBranch(route, fields);
  validate(fields);
  const details = describeErrors(validate.errors ?? [], schema);
  return invalid(`invalid ${String(type)} message: ${summarize(details)}`, details, wellFormedId(fields.id), String(type));
}

/**
 * For a message type that is itself a `oneOf` (result: success | failure), the branch whose `const`s
 * the message matches (ok: false -> failure), so its errors are about that branch only.
 */
function narrowToBranch(route: Route, value: Record<string, unknown>): { validate: ValidateFunction; schema: AnySchemaObject } {
  const registry = schemaRegistry();
  const schema = registry.documents.get(route.schemaFile)!;
  const branches = ((schema.oneOf ?? []) as Array<{ $ref?: string }>).flatMap(({ $ref }) => ($ref ? [$ref] : []));
  const matching = branches.find((file) => {
    const properties = (registry.documents.get(file)?.properties ?? {}) as Record<string, { const?: unknown }>;
    return Object.entries(properties).every(([key, sub]) => !('const' in sub) || sub.const === value[key]);
  });
  return matching
    ? { validate: registry.validator(matching), schema: registry.documents.get(matching)! }
    : { validate: route.validate, schema };
}

function invalid(message: string, details: ErrorDetail[], id?: RequestId, type?: string): Refusal {
  const error: InvalidMessage = {
    code: 'invalid_message',
    message: clip(message, MAX_ERROR_TEXT),
    details: details.map((d) => ({ path: clip(d.path, MAX_DETAIL_TEXT), message: clip(d.message, MAX_DETAIL_TEXT) })),
  };
  return { ok: false, error, ...(id !== undefined ? { id } : {}), ...(type !== undefined ? { type } : {}) };
}

/** The request id, if it is one the answer may carry (a valid RequestId). */
function wellFormedId(id: unknown): RequestId | undefined {
  const validId = schemaRegistry().validator('protocol-common.schema.json#/definitions/requestId');
  return validId(id) ? (id as RequestId) : undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}
