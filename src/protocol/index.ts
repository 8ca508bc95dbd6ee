/**
 * The v1 WebSocket protocol as data: message types derived from schemas/, validators compiled from
 * the same schemas, close codes and error codes. PROTOCOL.md is the prose; asyncapi.yaml the machine
 * readable description; all three share the schema files.
 */
export * from './codes.js';
export * from './job-rules.js';
export * from './messages.js';
export * from './validate.js';
export { MAX_ERROR_DETAILS } from './error-details.js';
export { CLIENT_MESSAGE_SCHEMA, INFO_SCHEMA, JOBS_SNAPSHOT_SCHEMA, SCHEMA_DIR, SERVER_MESSAGE_SCHEMA, schemaRegistry, type SchemaRegistry } from './schemas.js';
