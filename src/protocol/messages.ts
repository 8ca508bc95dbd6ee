/**
 * The v1 message types (derived from schemas/, see src/generated/schema-types.ts), the lists of
 * message types, and the defaults the schemas declare, read from the schemas so they are written once.
 */
import type { ClientMessage, CommandMessage, ServerMessage } from '../generated/schema-types.js';
import { CLIENT_MESSAGE_SCHEMA, SERVER_MESSAGE_SCHEMA, schemaRegistry } from './schemas.js';

export type {
  BookmarkMessage,
  ClientMessage,
  CommandAction,
  CommandError,
  CommandErrorCode,
  CommandMessage,
  ErrorDetail,
  ErrorMessage,
  EventMessage,
  PingMessage,
  PongMessage,
  ProgressMessage,
  ProtocolErrorCode,
  QmpErrorInfo,
  RequestId,
  ResultFailure,
  ResultMessage,
  ResultSuccess,
  ResumePositions,
  ServerMessage,
  StateMessage,
  StateTransition,
  StreamEpoch,
  StreamOffset,
  StreamPosition,
  SubscribedMessage,
  SubscribedStream,
  SubscribeMessage,
  SubscriptionFilter,
  SubscriptionId,
  SyncedMessage,
  TokenScope,
  UnsubscribedMessage,
  UnsubscribeMessage,
  VmMessage,
  VmName,
  VmStreamInfo,
  WelcomeMessage,
} from '../generated/schema-types.js';

export type ClientMessageType = ClientMessage['type'];
export type ServerMessageType = ServerMessage['type'];
export type ClientMessageOf<T extends ClientMessageType> = Extract<ClientMessage, { type: T }>;
export type ServerMessageOf<T extends ServerMessageType> = Extract<ServerMessage, { type: T }>;

/** The protocol version announced in `welcome` (a breaking change gets a new endpoint, /v2/ws). */
export const PROTOCOL_VERSION = 1;

/** A union schema's branches: message type -> schema file, in the order the union lists them. */
export function messageSchemas(unionFile: string): ReadonlyMap<string, string> {
  const { documents } = schemaRegistry();
  const union = documents.get(unionFile);
  const branches = (union?.oneOf ?? []) as Array<{ $ref: string }>;
  return new Map(
    branches.map(({ $ref }) => {
      const type = (documents.get($ref)?.properties as { type?: { const?: unknown } } | undefined)?.type?.const;
      if (typeof type !== 'string') throw new Error(`${$ref}: a message schema needs properties.type.const`);
      return [type, $ref];
    }),
  );
}

/** Every message type a client may send, from client-message.schema.json. */
export function clientMessageTypes(): ClientMessageType[] {
  return [...messageSchemas(CLIENT_MESSAGE_SCHEMA).keys()] as ClientMessageType[];
}

/** Every message type the server sends, from server-message.schema.json. */
export function serverMessageTypes(): ServerMessageType[] {
  return [...messageSchemas(SERVER_MESSAGE_SCHEMA).keys()] as ServerMessageType[];
}

export interface CommandDefaults {
  when: NonNullable<CommandMessage['when']>;
  await: NonNullable<CommandMessage['await']>;
  timeoutMs: number;
  force: boolean;
}

/** What an absent optional field of `command` means (the schema's `default`s). */
export function commandDefaults(): CommandDefaults {
  const properties = schemaProperties('msg-command.schema.json');
  return {
    when: properties.when!.default as CommandDefaults['when'],
    await: properties.await!.default as CommandDefaults['await'],
    timeoutMs: properties.timeoutMs!.default as number,
    force: properties.force!.default as boolean,
  };
}

/** `progress.intervalMs` when a subscribe does not say (the schema's `default`). */
export function defaultProgressIntervalMs(): number {
  const progress = schemaProperties('msg-subscribe.schema.json').progress as { properties: Record<string, { default?: unknown }> };
  return progress.properties.intervalMs!.default as number;
}

/** The most VM streams a `welcome` lists (the schema's `maxItems`); beyond it, it lists none and says how many. */
export function welcomeVmLimit(): number {
  const vms = schemaProperties('msg-welcome.schema.json').vms as { maxItems?: number };
  return vms.maxItems!;
}

/** The most VMs one page of `GET /v1/jobs?limit=` holds (the schema's `maxItems`). */
export function jobsPageLimit(): number {
  const vms = schemaProperties('http-jobs.schema.json').vms as { maxItems?: number };
  return vms.maxItems!;
}

/**
 * The page `GET /v1/jobs` gives without `limit`: as many VMs as a `welcome` lists, for the same
 * reason (one request must not cost a fleet's whole snapshot); `next` says when more follow.
 */
export function jobsDefaultPage(): number {
  return welcomeVmLimit();
}

function schemaProperties(file: string): Record<string, { default?: unknown }> {
  const schema = schemaRegistry().documents.get(file);
  if (!schema) throw new Error(`schema ${file} is not loaded`);
  return schema.properties as Record<string, { default?: unknown }>;
}
