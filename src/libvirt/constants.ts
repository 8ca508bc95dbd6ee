/**
 * The numbers of libvirt's wire protocol this client uses, from libvirt's .x files
 * (src/rpc/virnetprotocol.x, virkeepaliveprotocol.x, src/remote/remote_protocol.x,
 * qemu_protocol.x) and the public enums of libvirt-domain.h. libvirt never renumbers them: the
 * protocol is append-only across releases.
 */

// ---- virnetprotocol.x ------------------------------------------------------------------------

/** Largest message excluding the 4-byte length word (VIR_NET_MESSAGE_MAX). */
export const VIR_NET_MESSAGE_MAX = 16_777_216;
/** Serialised virNetMessageHeader: six 4-byte words. */
export const VIR_NET_MESSAGE_HEADER_BYTES = 24;
export const VIR_NET_MESSAGE_LEN_BYTES = 4;
/** VIR_NET_MESSAGE_STRING_MAX: the bound of remote_nonnull_string. */
export const VIR_NET_MESSAGE_STRING_MAX = 4_194_304;
export const VIR_UUID_BUFLEN = 16;

export const enum MessageType {
  Call = 0,
  Reply = 1,
  Message = 2,
  Stream = 3,
  CallWithFds = 4,
  ReplyWithFds = 5,
}

export const enum MessageStatus {
  Ok = 0,
  Error = 1,
  Continue = 2,
}

// ---- programs ----------------------------------------------------------------------------------

export const REMOTE_PROGRAM = 0x20008086;
export const REMOTE_PROTOCOL_VERSION = 1;
export const QEMU_PROGRAM = 0x20008087;
export const QEMU_PROTOCOL_VERSION = 1;
export const KEEPALIVE_PROGRAM = 0x6b656570;
export const KEEPALIVE_PROTOCOL_VERSION = 1;

export const KEEPALIVE_PROC_PING = 1;
export const KEEPALIVE_PROC_PONG = 2;

/** remote_protocol.x procedures this client calls or receives. */
export const RemoteProc = {
  CONNECT_OPEN: 1,
  CONNECT_CLOSE: 2,
  CONNECT_GET_VERSION: 4,
  DOMAIN_GET_XML_DESC: 14,
  DOMAIN_LOOKUP_BY_NAME: 23,
  DOMAIN_LOOKUP_BY_UUID: 24,
  CONNECT_SUPPORTS_FEATURE: 60,
  AUTH_LIST: 66,
  AUTH_POLKIT: 70,
  CONNECT_GET_LIB_VERSION: 157,
  DOMAIN_BLOCK_JOB_ABORT: 237,
  DOMAIN_GET_BLOCK_JOB_INFO: 238,
  DOMAIN_BLOCK_JOB_SET_SPEED: 239,
  CONNECT_LIST_ALL_DOMAINS: 273,
  CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY: 316,
  CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY: 317,
  DOMAIN_EVENT_CALLBACK_LIFECYCLE: 318,
  DOMAIN_EVENT_BLOCK_JOB_2: 339,
} as const;

/** qemu_protocol.x procedures. */
export const QemuProc = {
  CONNECT_DOMAIN_MONITOR_EVENT_REGISTER: 4,
  CONNECT_DOMAIN_MONITOR_EVENT_DEREGISTER: 5,
  DOMAIN_MONITOR_EVENT: 6,
} as const;

/** Bounds of remote_protocol.x used when decoding. */
export const REMOTE_AUTH_TYPE_LIST_MAX = 20;
export const REMOTE_DOMAIN_LIST_MAX = 16_384;
export const REMOTE_STRING_MAX = VIR_NET_MESSAGE_STRING_MAX;

// ---- public enums (libvirt-host.h, libvirt-domain.h) --------------------------------------------

/** remote_auth_type. */
export const AUTH_TYPES = ['none', 'sasl', 'polkit'] as const;

export const VIR_CONNECT_RO = 1;
export const VIR_DRV_FEATURE_PROGRAM_KEEPALIVE = 10;
export const VIR_CONNECT_LIST_DOMAINS_ACTIVE = 1;
export const VIR_CONNECT_LIST_DOMAINS_INACTIVE = 2;
export const VIR_DOMAIN_XML_SECURE = 1;
export const VIR_DOMAIN_XML_INACTIVE = 2;
export const VIR_DOMAIN_BLOCK_JOB_INFO_BANDWIDTH_BYTES = 1;
export const VIR_DOMAIN_BLOCK_JOB_ABORT_ASYNC = 1;
export const VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT = 2;
export const VIR_DOMAIN_BLOCK_JOB_SPEED_BANDWIDTH_BYTES = 1;

/** virDomainEventID values of the events this client watches. */
export const VIR_DOMAIN_EVENT_ID_LIFECYCLE = 0;
export const VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2 = 16;

/** virDomainBlockJobType, by value. */
export const BLOCK_JOB_TYPES = ['unknown', 'pull', 'copy', 'commit', 'active-commit', 'backup'] as const;
/** virConnectDomainEventBlockJobStatus, by value. */
export const BLOCK_JOB_STATUSES = ['completed', 'failed', 'canceled', 'ready'] as const;
/** virDomainEventType, by value. */
export const LIFECYCLE_EVENTS = [
  'defined',
  'undefined',
  'started',
  'suspended',
  'resumed',
  'stopped',
  'shutdown',
  'pmsuspended',
  'crashed',
] as const;

/** virErrorNumber names for the codes a job source meets; the rest are reported by number. */
export const VIR_ERROR_NAMES: Readonly<Record<number, string>> = {
  1: 'VIR_ERR_INTERNAL_ERROR',
  3: 'VIR_ERR_NO_SUPPORT',
  5: 'VIR_ERR_NO_CONNECT',
  8: 'VIR_ERR_INVALID_ARG',
  9: 'VIR_ERR_OPERATION_FAILED',
  29: 'VIR_ERR_OPERATION_DENIED',
  38: 'VIR_ERR_SYSTEM_ERROR',
  39: 'VIR_ERR_RPC',
  42: 'VIR_ERR_NO_DOMAIN',
  45: 'VIR_ERR_AUTH_FAILED',
  55: 'VIR_ERR_OPERATION_INVALID',
  68: 'VIR_ERR_OPERATION_TIMEOUT',
  84: 'VIR_ERR_OPERATION_UNSUPPORTED',
  86: 'VIR_ERR_AGENT_UNRESPONSIVE',
  94: 'VIR_ERR_AUTH_UNAVAILABLE',
};
