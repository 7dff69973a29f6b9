//! Rate-limit budgets in Redis ([`RedisBudgets`]), so every node takes from one budget
//! per key (`hermet_app::rate_limits`).
//!
//! A budget is the GCRA's theoretical arrival time (`hermet:rl:{limit}:{key}`, in
//! microseconds of Redis's own clock, so nodes' clocks do not matter), advanced by one
//! period per call and refused while it is more than `burst` periods ahead; it expires
//! once it is in the past. All the budgets of one call are checked and taken in one
//! script, atomically: a call refused by one budget takes nothing from the others. Failed
//! sign-ins are a hash per account (`hermet:rl:fail:{account}`: count, time of the last)
//! kept for twice the longest back-off. Calls give up after [`TIMEOUT`] and go through a
//! circuit breaker (role `rate_limits`); while Redis does not answer, each node limits on
//! its own budgets.

use std::time::Duration;

use hermet_app::push::BoxFuture;
use hermet_app::rate_limits::{Budget, SharedBudgets};
use redis::Script;
use redis::aio::ConnectionManager;

use crate::breaker::{Breaker, Refused};

const TIMEOUT: Duration = Duration::from_millis(250);
const PREFIX: &str = "hermet:rl:";

/// KEYS: budgets; ARGV: period (µs) and burst of each. Returns {-1, 0} when every budget
/// had the call (all taken), else {index from 0, µs to wait} of the longest wait.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local worst, wait = -1, 0
local tats = {}
for i = 1, #KEYS do
  local period, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  tats[i] = tat + period
  local w = tats[i] - period * burst - now
  if w > wait then worst, wait = i - 1, w end
end
if worst >= 0 then return {worst, wait} end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', math.floor((tats[i] - now) / 1000) + 1)
end
return {-1, 0}
";

/// KEYS[1]: an account's failures. Returns {count, ms since the last} or nil.
const FAILURES: &str = r"
local v = redis.call('HMGET', KEYS[1], 'n', 'last')
if not v[1] then return nil end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {tonumber(v[1]), math.max(now - tonumber(v[2]), 0)}
";

/// KEYS[1]: an account's failures; ARGV[1]: how long to keep them (ms).
const FAILED: &str = r"
local t = redis.call('TIME')
redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 'last', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
";

pub struct RedisBudgets {
    conn: ConnectionManager,
    breaker: Breaker,
    take: Script,
    failures: Script,
    failed: Script,
}

impl RedisBudgets {
    pub async fn connect(url: &str, tls: &crate::RedisTls) -> anyhow::Result<Self> {
        let conn = crate::connection(&crate::client(url, tls)?).await?;
        Ok(Self {
            conn,
            breaker: Breaker::new("rate_limits"),
            take: Script::new(TAKE),
            failures: Script::new(FAILURES),
            failed: Script::new(FAILED),
        })
    }

    /// `call` through the breaker; `None` (and a warning unless the breaker is open)
    /// when Redis does not answer.
    async fn call<T>(&self, what: &str, call: impl Future<Output = redis::RedisResult<T>>) -> Option<T> {
        match self.breaker.call(TIMEOUT, call).await {
            Ok((v, _)) => Some(v),
            Err(Refused::Open) => None,
            Err(e) => {
                tracing::warn!(error = %e, "{what}: Redis does not answer; limiting on this node's budgets");
                None
            }
        }
    }
}

fn failures_key(account: &str) -> String {
    format!("{PREFIX}fail:{account}")
}

impl SharedBudgets for RedisBudgets {
    fn take<'a>(&'a self, budgets: &'a [Budget]) -> BoxFuture<'a, Option<Result<(), (usize, Duration)>>> {
        Box::pin(async move {
            let mut inv = self.take.prepare_invoke();
            for b in budgets {
                inv.key(format!("{PREFIX}{}", b.name)).arg(b.period.as_micros() as u64).arg(b.burst);
            }
            let mut c = self.conn.clone();
            let (worst, wait): (i64, u64) = self.call("rate limit", inv.invoke_async(&mut c)).await?;
            Some(match usize::try_from(worst) {
                Ok(i) => Err((i, Duration::from_micros(wait))),
                Err(_) => Ok(()),
            })
        })
    }

    fn failures<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Option<(u32, Duration)>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let found: Option<(u32, u64)> =
                self.call("sign-in back-off", self.failures.key(failures_key(account)).invoke_async(&mut c)).await?;
            Some(found.map_or((0, Duration::ZERO), |(n, ago)| (n, Duration::from_millis(ago))))
        })
    }

    fn sign_in_result<'a>(&'a self, account: &'a str, ok: bool, keep: Duration) -> BoxFuture<'a, Option<()>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let key = failures_key(account);
            if ok {
                self.call("sign-in back-off", redis::cmd("DEL").arg(&key).query_async::<()>(&mut c)).await
            } else {
                let ms = keep.as_millis().max(1) as u64;
                self.call("sign-in back-off", self.failed.key(&key).arg(ms).invoke_async::<()>(&mut c)).await
            }
        })
    }
}
