//! Events in Redis streams: a stream per topic, a consumer group per
//! group, Lua scripts where a step must be atomic.

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use redis::aio::ConnectionManager;

use super::{
    ConsumeOptions, DEDUP_WINDOW, Events, EventsError, NewEvent, Published, Receipts, Start,
};
use crate::backend::redis::{RedisConnection, unreachable};

mod member;

use member::{Member, Shared};

/// How many new events one read takes for a member.
const BATCH: usize = 64;

/// How many due redeliveries one claim takes.
const CLAIM_BATCH: usize = 64;

/// A consumer with nothing pending that has not been seen this long is
/// removed from its group when another member starts.
const REAP_IDLE: Duration = Duration::from_secs(600);

/// Stores an event unless its id is within the dedup window; returns
/// `{entry id, duplicate}`.
///
/// KEYS: stream, the id's dedup key. ARGV: the dedup window in ms, then
/// the entry's fields.
const PUBLISH: &str = r"
local old = redis.call('GET', KEYS[2])
if old then return {old, 1} end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('SET', KEYS[2], id, 'PX', ARGV[1])
return {id, 0}
";

/// Makes the group unless it exists, after entry ARGV[2]; returns 1 if it
/// made it.
const GROUP: &str = r"
local made = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], ARGV[2], 'MKSTREAM')
if type(made) == 'table' and made.err then
  if string.find(made.err, 'BUSYGROUP') then return 0 end
  return made
end
return 1
";

/// How many bits of an event's sequence hold the entry id's second part
/// (the entries of one millisecond: Redis adds far fewer than 4096).
const SEQUENCE_BITS: u32 = 12;

/// The millisecond sequences count from (2024-01-01 UTC), so that they
/// stay below 2^53, exact in JSON for JavaScript too, until 2093.
const EPOCH_MS: u64 = 1_704_067_200_000;

/// An entry id's sequence: `<ms>-<n>` as `(ms - 2024) · 2^12 + n`, so that
/// it grows as the ids do.
fn sequence_of(id: &str) -> Option<u64> {
    let (ms, n) = id.split_once('-')?;
    let (ms, n) = (ms.parse::<u64>().ok()?, n.parse::<u64>().ok()?);
    let n = n.min((1 << SEQUENCE_BITS) - 1);
    Some((ms.saturating_sub(EPOCH_MS) << SEQUENCE_BITS) + n)
}

/// The entry id of a sequence.
fn id_of(sequence: u64) -> String {
    let n = sequence & ((1 << SEQUENCE_BITS) - 1);
    format!("{}-{n}", (sequence >> SEQUENCE_BITS) + EPOCH_MS)
}

/// An entry's time, from its sequence.
fn millis_of(sequence: u64) -> u64 {
    (sequence >> SEQUENCE_BITS) + EPOCH_MS
}

/// Takes over the group's deliveries that are due again (unacked for the
/// ack wait, or nacked and their delay over), oldest first; a nack whose
/// delay outlasts the ack wait is put back to wait. Returns
/// `{{id, fields, attempt}, ...}`.
///
/// KEYS: stream, due hash. ARGV: group, consumer, ack wait in ms, count.
const CLAIM: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = tonumber(ARGV[3])
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', wait, '-', '+', ARGV[4])
local out = {}
for _, p in ipairs(pending) do
  local field = ARGV[1] .. ' ' .. p[1]
  local due = tonumber(redis.call('HGET', KEYS[2], field) or '0')
  if due > now then
    local idle = wait - (due - now)
    if idle < 0 then idle = 0 end
    redis.call('XCLAIM', KEYS[1], ARGV[1], p[2], 0, p[1], 'IDLE', idle, 'JUSTID')
  else
    if due > 0 then redis.call('HDEL', KEYS[2], field) end
    local e = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, p[1])[1]
    if e then out[#out + 1] = {e[1], e[2], p[4] + 1} end
  end
end
return out
";

/// Restamps a delivery if it is still this consumer's and this attempt:
/// sets its idle time (0 to restart the ack wait, the ack wait less a
/// delay to make it due after the delay), records a delay longer than the
/// ack wait, and optionally sets its delivery count. Returns 1 if it did.
///
/// KEYS: stream, due hash. ARGV: group, consumer, id, attempt, idle in ms,
/// a long delay in ms (0 if none), the delivery count to set ('' to keep).
const SETTLE: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)[1]
if not p or p[2] ~= ARGV[2] or p[4] ~= tonumber(ARGV[4]) then return 0 end
local args = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[5], 'JUSTID'}
if ARGV[7] ~= '' then
  args[#args + 1] = 'RETRYCOUNT'
  args[#args + 1] = ARGV[7]
end
redis.call(unpack(args))
if ARGV[6] ~= '0' then
  local t = redis.call('TIME')
  local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[6])
  redis.call('HSET', KEYS[2], ARGV[1] .. ' ' .. ARGV[3], string.format('%d', due))
end
return 1
";

/// Removes the group's consumers that hold nothing and have been idle
/// longer than ARGV[2] ms (ARGV[3], if given, is removed whenever it holds
/// nothing): one that comes back is made again by its next read, so
/// nothing is lost.
const REAP: &str = r"
local removed = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info.pending == 0 and (info.name == ARGV[3] or info.idle > tonumber(ARGV[2])) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info.name)
    removed = removed + 1
  end
end
return removed
";

/// Events in Redis streams (cargo feature `redis`).
///
/// A topic is a stream, `micro:events:{<topic>}`, with ids Redis makes
/// (`<ms>-<n>`); an event's sequence is its id as one number below 2^53,
/// `(ms - 2024-01-01) · 2^12 + n`, so it grows with gaps, and a start at a sequence is a
/// start after an id. An event without a publisher's id is one `XADD`; one
/// with an id is a script that adds it unless the id is within the dedup
/// window (the id kept under a key of its own). A group is a Redis consumer group of that stream, made on
/// first use and kept, so a restarted process resumes where its group
/// stopped; each member is a consumer of its own with a connection of its
/// own for its blocking reads (everything else goes over the connection
/// the parts share).
///
/// At least once: an entry stays in the group's pending list until a
/// member acks it. A member takes over the entries that have gone unacked
/// for the ack wait (a member that died, say) oldest first. A nack keeps
/// the entry in the pending list, in its place, and only changes when it is
/// due again. Nothing trims the streams: cap them with `XTRIM` if they
/// must not grow for ever.
#[derive(Clone, Debug)]
pub struct RedisEvents {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connection: Arc<RedisConnection>,
    publish: redis::Script,
    group: redis::Script,
    claim: redis::Script,
    settle: redis::Script,
    reap: redis::Script,
}

impl RedisEvents {
    /// Events at the Redis server at `url` (`redis://host:port/db`), on a
    /// connection of their own.
    ///
    /// # Errors
    /// 400 for a URL Redis does not take.
    pub fn new(url: &str) -> Result<Self, EventsError> {
        Ok(Self::on(
            RedisConnection::new(url).map_err(EventsError::Invalid)?,
        ))
    }

    /// Events on `connection`, which other parts may share.
    pub(crate) fn on(connection: Arc<RedisConnection>) -> Self {
        Self {
            inner: Arc::new(Inner {
                connection,
                publish: redis::Script::new(PUBLISH),
                group: redis::Script::new(GROUP),
                claim: redis::Script::new(CLAIM),
                settle: redis::Script::new(SETTLE),
                reap: redis::Script::new(REAP),
            }),
        }
    }
}

impl Inner {
    async fn conn(&self) -> Result<ConnectionManager, EventsError> {
        (self.connection.manager().await).map_err(EventsError::Unavailable)
    }

    fn error(&self, e: &redis::RedisError) -> EventsError {
        let text = format!("redis events at {}: {e}", self.connection.url());
        if unreachable(e) {
            EventsError::Unavailable(text)
        } else {
            EventsError::Backend(text)
        }
    }

    /// Makes `group` on `stream` unless it exists.
    async fn make_group(&self, stream: &str, group: &str, start: Start) -> Result<(), EventsError> {
        let mut conn = self.conn().await?;
        let _: i64 = (self.group.key(stream).arg(group).arg(group_start(start)))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error(&e))?;
        Ok(())
    }
}

/// The entry id a new group starting at `start` has seen last.
fn group_start(start: Start) -> String {
    match start {
        Start::New => "$".to_owned(),
        Start::Beginning | Start::Sequence(0 | 1) => "0-0".to_owned(),
        Start::Sequence(s) => id_of(s - 1),
        Start::Time(t) => {
            // Entries stored in the millisecond `t` falls in or later.
            let nanos = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
            match nanos.div_ceil(1_000_000).checked_sub(1) {
                Some(before) => format!("{before}-{}", u64::MAX),
                None => "0-0".to_owned(),
            }
        }
    }
}

/// A topic's keys, all with the topic as their hash tag, so that they sit
/// on one node of a Redis Cluster.
fn stream_key(topic: &str) -> String {
    format!("micro:events:{{{topic}}}")
}

fn due_key(topic: &str) -> String {
    format!("micro:events:{{{topic}}}:due")
}

fn dedup_key(topic: &str, id: &str) -> String {
    format!("micro:events:{{{topic}}}:id:{id}")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Events for RedisEvents {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn publish<'a>(
        &'a self,
        topic: &'a str,
        event: NewEvent,
    ) -> BoxFuture<'a, Result<Published, EventsError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut conn = inner.conn().await?;
            let fields = |cmd: &mut redis::Cmd, id: &str| {
                cmd.arg("i")
                    .arg(id)
                    .arg("c")
                    .arg(event.content_type.as_str())
                    .arg("p")
                    .arg(event.payload.as_ref());
                for (key, value) in &event.metadata {
                    cmd.arg(format!("m.{key}")).arg(value);
                }
            };
            let (id, (entry, duplicate)) = match event.id {
                // A new id cannot be a duplicate: only a publisher's own is
                // kept, by a script that adds the entry unless it is there.
                None => {
                    let id = crate::wire::new_id();
                    let mut cmd = redis::cmd("XADD");
                    cmd.arg(stream_key(topic)).arg("*");
                    fields(&mut cmd, &id);
                    let entry: String = cmd
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| inner.error(&e))?;
                    (id, (entry, 0))
                }
                Some(ref id) => {
                    let mut cmd = redis::cmd("EVALSHA");
                    cmd.arg(inner.publish.get_hash()).arg(2);
                    cmd.arg(stream_key(topic)).arg(dedup_key(topic, id));
                    cmd.arg(millis(DEDUP_WINDOW));
                    fields(&mut cmd, id);
                    let reply: (String, i64) = match cmd.query_async(&mut conn).await {
                        Ok(reply) => reply,
                        Err(e)
                            if e.kind()
                                == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                        {
                            let _: String = redis::cmd("SCRIPT")
                                .arg("LOAD")
                                .arg(PUBLISH)
                                .query_async(&mut conn)
                                .await
                                .map_err(|e| inner.error(&e))?;
                            cmd.query_async(&mut conn)
                                .await
                                .map_err(|e| inner.error(&e))?
                        }
                        Err(e) => return Err(inner.error(&e)),
                    };
                    (id.clone(), reply)
                }
            };
            let sequence = sequence_of(&entry)
                .ok_or_else(|| EventsError::Backend(format!("redis events: entry id {entry}")))?;
            Ok(Published {
                id,
                sequence,
                duplicate: duplicate == 1,
            })
        })
    }

    fn consume<'a>(
        &'a self,
        topic: &'a str,
        options: &'a ConsumeOptions,
    ) -> BoxFuture<'a, Result<Receipts, EventsError>> {
        Box::pin(async move {
            let inner = self.inner.clone();
            let stream = stream_key(topic);
            inner
                .make_group(&stream, &options.group, options.start)
                .await?;
            let ack_wait = options.ack_wait.max(Duration::from_millis(10));
            // Blocking reads end this often, to look for due redeliveries.
            let poll = (ack_wait / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
            let reader = (inner.connection)
                .dedicated(poll + Duration::from_secs(5))
                .await
                .map_err(EventsError::Unavailable)?;
            let shared = Arc::new(Shared {
                inner,
                topic: topic.to_owned(),
                stream,
                due: due_key(topic),
                group: options.group.clone(),
                name: format!("{}-{}", std::process::id(), crate::wire::new_id()),
                ack_wait,
                wake: Mutex::new(None),
            });
            // Consumers that left nothing behind, gone for a while.
            if let Ok(mut conn) = shared.inner.conn().await {
                let _: Result<i64, _> = (shared.inner.reap.key(&shared.stream))
                    .arg(&shared.group)
                    .arg(millis(REAP_IDLE))
                    .invoke_async(&mut conn)
                    .await;
            }
            let member = Member::new(shared, options.start, reader, poll);
            let receipts = futures_util::stream::unfold(member, |mut member| async move {
                let next = member.next().await;
                Some((next, member))
            });
            Ok(receipts.boxed())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_topic_as_hash_tag() {
        assert_eq!(
            stream_key("orders.created"),
            "micro:events:{orders.created}"
        );
        assert_eq!(dedup_key("orders", "o-1"), "micro:events:{orders}:id:o-1");
    }

    #[test]
    fn sequences_grow_as_entry_ids_do() {
        let ids = [
            "1704067200000-1",
            "1704067200005-0",
            "1704067200005-1",
            "1704067200005-4095",
            "1704067200006-0",
            "1764000000000-0",
        ];
        let seqs: Vec<u64> = ids.iter().map(|i| sequence_of(i).unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        for (id, seq) in ids.iter().zip(&seqs) {
            assert_eq!(&id_of(*seq), id);
        }
        assert_eq!(sequence_of("not an id"), None);
        // Exact as a JSON number in JavaScript until 2093.
        let in_2093: u64 = 1_704_067_200_000 + (1 << 41) - 1;
        assert!(sequence_of(&format!("{in_2093}-4095")).unwrap() < 1u64 << 53);
    }

    #[test]
    fn a_group_starts_after_the_entry_before_its_start() {
        let id = group_start;
        assert_eq!(id(Start::New), "$");
        assert_eq!(id(Start::Beginning), "0-0");
        assert_eq!(id(Start::Sequence(1)), "0-0");
        let seq = sequence_of("1764000000000-3").unwrap();
        assert_eq!(id(Start::Sequence(seq)), "1764000000000-2");
        assert_eq!(
            id(Start::Sequence(seq - 3)),
            format!("1763999999999-{}", (1 << 12) - 1)
        );
        // From the millisecond the time falls in: entries of an earlier
        // millisecond are before it, whatever their sequence.
        let at = |nanos| Start::Time(UNIX_EPOCH + Duration::from_nanos(nanos));
        assert_eq!(id(at(5_000_000)), format!("4-{}", u64::MAX));
        assert_eq!(id(at(5_000_001)), format!("5-{}", u64::MAX));
        assert_eq!(id(at(0)), "0-0");
    }
}
