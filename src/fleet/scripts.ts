/**
 * The Lua scripts where atomicity matters. Each touches only the keys of one VM (one hash slot), so
 * they run unchanged on a Redis Cluster. KEYS are always: meta, lease, stream, jobs (see keys.ts).
 * The one exception, RENEW_MANY, renews many VMs' leases on one node and says how.
 */

/**
 * Claim a VM for a host: refused while another host's lease lives; otherwise a new fencing token
 * (the lease value is "<host>|<token>"). The stream keeps its epoch and head when it has one (a
 * restarted host continues it); a missing meta hash (new VM, or data lost) starts the given epoch.
 * ARGV: host, ttlMs, freshEpoch.
 * Returns {'owned', lease, pttl} or {'same'|'new', epoch, head, lease}.
 */
export const CLAIM = `
local lease = redis.call('GET', KEYS[2])
if lease and string.sub(lease, 1, string.len(ARGV[1]) + 1) ~= ARGV[1] .. '|' then
  return {'owned', lease, redis.call('PTTL', KEYS[2])}
end
local token = redis.call('HINCRBY', KEYS[1], 'fence', 1)
local value = ARGV[1] .. '|' .. token
redis.call('SET', KEYS[2], value, 'PX', ARGV[2])
redis.call('HSET', KEYS[1], 'host', ARGV[1])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  redis.call('DEL', KEYS[3], KEYS[4])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[3], 'head', 0)
  return {'new', ARGV[3], 0, value}
end
return {'same', epoch, tonumber(redis.call('HGET', KEYS[1], 'head') or '0'), value}
`;

/**
 * Restart Redis's copy of a stream at the host's position, with a full snapshot: after data loss
 * (flush, failover that dropped writes) or a buffer overflow during an outage. The old entries go,
 * so a resume from before `head` gets a snapshot instead of a replay with a hole.
 * ARGV: lease, epoch, head, status, reason, channel, vm, then job id / job JSON pairs.
 * Returns {'ok'} or {'fenced', lease}.
 */
export const REOPEN = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {'fenced', redis.call('GET', KEYS[2]) or ''} end
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('HSET', KEYS[1], 'epoch', ARGV[2], 'head', ARGV[3], 'status', ARGV[4], 'reason', ARGV[5])
redis.call('HDEL', KEYS[1], 'gone')
for i = 8, #ARGV, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]) end
redis.call('PUBLISH', ARGV[6], 'r\\n' .. ARGV[7] .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[3])
return {'ok'}
`;

/**
 * Append a batch of one VM's events, fenced: only the lease holder, only on the expected epoch, only
 * at head + 1. Each event also updates the job (or VM status) it changes and is published on the
 * VM's notify channel after it is stored, so a reader that sees the notice can always XRANGE it.
 * ARGV: lease, epoch, maxlen, channel, vm, count, then per event: offset, kind (t|v), body, q,
 * a (job id | status), b (job JSON | reason).
 * Returns {'ok', head} or {'fenced', lease} / {'epoch', epoch} / {'head', head}.
 */
export const APPEND = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {'fenced', redis.call('GET', KEYS[2]) or ''} end
local m = redis.call('HMGET', KEYS[1], 'epoch', 'head')
if m[1] ~= ARGV[2] then return {'epoch', m[1] or ''} end
local head = tonumber(m[2])
local result = {'ok', head}
for i = 0, tonumber(ARGV[6]) - 1 do
  local b = 7 + i * 6
  local offset = tonumber(ARGV[b])
  if offset ~= head + 1 then result = {'head', head}; break end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '0-' .. offset, 'k', ARGV[b + 1], 'b', ARGV[b + 2], 'q', ARGV[b + 3])
  if ARGV[b + 1] == 't' then
    redis.call('HSET', KEYS[4], ARGV[b + 4], ARGV[b + 5])
  else
    redis.call('HSET', KEYS[1], 'status', ARGV[b + 4], 'reason', ARGV[b + 5])
  end
  redis.call('PUBLISH', ARGV[4], 'e\\n' .. ARGV[5] .. '\\n' .. ARGV[2] .. '\\n' .. offset .. '\\n' .. ARGV[b + 1] .. '\\n' .. ARGV[b + 3] .. '\\n' .. ARGV[b + 2])
  head = offset
  result[2] = head
end
redis.call('HSET', KEYS[1], 'head', head)
return result
`;

/** Extend the lease if it is still ours. ARGV: lease, ttlMs. Returns 1, or 0 when lost. */
export const RENEW = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
`;

/**
 * Renew many leases of one host in one call: a host's idle cost is one call per tick (per Redis node
 * of a cluster), not one per VM. The leases are passed in ARGV, not KEYS, because a cluster refuses
 * declared keys of different slots; `allow-cross-slot-keys` lets the script reach them all as long as
 * they live on the node KEYS[1] (one of them) routes the call to. A slot that moved meanwhile makes
 * the call fail as a whole ("non local key"), and the caller renews that group one lease at a time.
 * KEYS: one of the leases. ARGV: ttlMs, then lease key / lease value pairs. Returns 1 or 0 per pair.
 */
export const RENEW_MANY = `#!lua flags=allow-cross-slot-keys
local out = {}
for i = 2, #ARGV, 2 do
  if redis.call('GET', ARGV[i]) == ARGV[i + 1] then
    redis.call('PEXPIRE', ARGV[i], ARGV[1])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
`;

/** Give the lease up on a clean shutdown, so a restart elsewhere need not wait for the TTL. ARGV: lease. */
export const RELEASE = `
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
`;

/** Forget jobs the host no longer lists (expired from its snapshot). ARGV: lease, channel, vm, ids... */
export const PRUNE = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
for i = 4, #ARGV do redis.call('HDEL', KEYS[4], ARGV[i]) end
redis.call('PUBLISH', ARGV[2], 'x\\n' .. ARGV[3] .. '\\n' .. cjson.encode({unpack(ARGV, 4)}))
return 1
`;

/**
 * Set the VM's monitor status outside the stream: only for a change the stream could not carry (the
 * monitor connected before the host's stream was open). ARGV: lease, status, channel, vm.
 */
export const STATUS = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
redis.call('PUBLISH', ARGV[3], 's\\n' .. ARGV[4] .. '\\n' .. ARGV[2])
return 1
`;

/**
 * An edge records that a VM's host is gone: its lease ended and it stopped renewing. The one write
 * an edge makes to a stream, fenced by the lease's absence (a host that holds the lease, or claims
 * it first, wins), at the head the edge saw, once per host and head (several edges may try). The
 * offset is kept in the meta hash (`gone`): a restarted host that had served that offset itself
 * knows its offset now names another event.
 * ARGV: host, epoch, head, body (the `vm` event at head + 1), reason, channel, vm.
 * Returns {'ok'} or {'leased'} / {'moved'} (another host, epoch or head) / {'done'}.
 */
export const MARK_GONE = `
if redis.call('EXISTS', KEYS[2]) == 1 then return {'leased'} end
local m = redis.call('HMGET', KEYS[1], 'host', 'epoch', 'head', 'status', 'reason')
if m[1] ~= ARGV[1] or m[2] ~= ARGV[2] or tonumber(m[3]) ~= tonumber(ARGV[3]) then return {'moved'} end
if m[4] == 'disconnected' and m[5] == ARGV[5] then return {'done'} end
local offset = tonumber(ARGV[3]) + 1
redis.call('XADD', KEYS[3], '0-' .. offset, 'k', 'v', 'b', ARGV[4], 'q', '')
redis.call('HSET', KEYS[1], 'head', offset, 'status', 'disconnected', 'reason', ARGV[5], 'gone', offset)
redis.call('PUBLISH', ARGV[6], 'e\\n' .. ARGV[7] .. '\\n' .. ARGV[2] .. '\\n' .. offset .. '\\nv\\n\\n' .. ARGV[4])
return {'ok'}
`;

/**
 * What the ACL must let a host do, done without effect: a write to a fleet key from a script (the
 * registry loses a member no VM has). KEYS: the registry. ARGV: ''. Returns 0.
 */
export const ACCESS = `return redis.call('SREM', KEYS[1], ARGV[1])`;
