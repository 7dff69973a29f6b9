//! Rate limits: GCRA budgets per action and key (user, channel, client address), and a
//! growing back-off for failed sign-ins per account (docs/API.md "Rate limits").
//!
//! Where budgets live: with `redis_url` set, in Redis ([`SharedBudgets`], implemented by
//! `hermet_redis::RedisBudgets`: the same GCRA in one script), so every node takes from
//! one budget; otherwise, and whenever Redis does not answer, in this node's memory with
//! the `governor` crate, so a Redis outage neither blocks calls nor lifts the limits.
//!
//! A refused call writes nothing and answers 429 `rate_limited` with `Retry-After`; a
//! WebSocket `send` gets an `error` frame and the socket stays open.
//! `rate_limited_total{limit}` counts refusals.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hermet_domain::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::push::BoxFuture;

/// `count` calls per `per_secs` seconds on average, `burst` at once.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub count: u32,
    pub per_secs: u64,
    pub burst: u32,
}

impl Rate {
    const fn new(count: u32, per_secs: u64, burst: u32) -> Self {
        Self { count, per_secs, burst }
    }

    /// The time one call costs (the GCRA's emission interval).
    fn period(&self) -> Option<Duration> {
        Duration::from_secs(self.per_secs).checked_div(self.count).filter(|p| !p.is_zero())
    }

    fn quota(&self) -> Option<Quota> {
        Some(Quota::with_period(self.period()?)?.allow_burst(NonZeroU32::new(self.burst)?))
    }
}

/// The `[rate_limits]` configuration section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    pub enabled: bool,
    /// Behind a proxy: the header it appends the client's address to (e.g.
    /// `x-forwarded-for`); its last address is the client's. Unset: the TCP peer.
    pub client_ip_header: Option<String>,
    /// Sign-ins from one client address, right or wrong.
    pub sign_in_per_ip: Rate,
    /// Failed sign-ins an account may have in a row before each further attempt must wait
    /// 1 s, then 2 s, 4 s, … up to `sign_in_max_backoff_secs` after the last failure. A
    /// right password resets it; sessions already open and their refreshes are not
    /// affected.
    pub sign_in_free_failures: u32,
    pub sign_in_max_backoff_secs: u64,
    pub sign_up_per_ip: Rate,
    pub refresh_per_ip: Rate,
    pub sends_per_user: Rate,
    pub sends_per_channel: Rate,
    /// Friend requests and requests to join groups.
    pub applications_per_user: Rate,
    pub group_creations_per_user: Rate,
    pub searches_per_user: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            client_ip_header: None,
            sign_in_per_ip: Rate::new(60, 60, 30),
            sign_in_free_failures: 5,
            sign_in_max_backoff_secs: 900,
            sign_up_per_ip: Rate::new(10, 60, 10),
            refresh_per_ip: Rate::new(120, 60, 60),
            sends_per_user: Rate::new(20, 1, 60),
            sends_per_channel: Rate::new(200, 1, 400),
            applications_per_user: Rate::new(30, 3600, 20),
            group_creations_per_user: Rate::new(30, 3600, 10),
            searches_per_user: Rate::new(5, 1, 20),
        }
    }
}

impl RateLimits {
    /// Problems with these settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for limit in Limit::ALL {
            if self.rate(limit).quota().is_none() {
                p.push(format!(
                    "rate_limits.{}: count, per_secs and burst must be at least 1 (and count at most per_secs × 10⁹)",
                    limit.name()
                ));
            }
        }
        if self.sign_in_max_backoff_secs == 0 {
            p.push("rate_limits.sign_in_max_backoff_secs: at least 1".into());
        }
        p
    }

    /// The configured budget of `limit`.
    fn rate(&self, limit: Limit) -> Rate {
        match limit {
            Limit::SignInPerIp => self.sign_in_per_ip,
            Limit::SignUpPerIp => self.sign_up_per_ip,
            Limit::RefreshPerIp => self.refresh_per_ip,
            Limit::SendsPerUser => self.sends_per_user,
            Limit::SendsPerChannel => self.sends_per_channel,
            Limit::ApplicationsPerUser => self.applications_per_user,
            Limit::GroupCreationsPerUser => self.group_creations_per_user,
            Limit::SearchesPerUser => self.searches_per_user,
        }
    }
}

/// What a budget is for; its name is the `limit` label and the error's `details.limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    SignInPerIp,
    SignUpPerIp,
    RefreshPerIp,
    SendsPerUser,
    SendsPerChannel,
    ApplicationsPerUser,
    GroupCreationsPerUser,
    SearchesPerUser,
}

impl Limit {
    /// Every limit, in the order of [`Limiter`]'s budgets (`limit as usize`).
    pub const ALL: [Limit; 8] = [
        Limit::SignInPerIp,
        Limit::SignUpPerIp,
        Limit::RefreshPerIp,
        Limit::SendsPerUser,
        Limit::SendsPerChannel,
        Limit::ApplicationsPerUser,
        Limit::GroupCreationsPerUser,
        Limit::SearchesPerUser,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Limit::SignInPerIp => "sign_in_per_ip",
            Limit::SignUpPerIp => "sign_up_per_ip",
            Limit::RefreshPerIp => "refresh_per_ip",
            Limit::SendsPerUser => "sends_per_user",
            Limit::SendsPerChannel => "sends_per_channel",
            Limit::ApplicationsPerUser => "applications_per_user",
            Limit::GroupCreationsPerUser => "group_creations_per_user",
            Limit::SearchesPerUser => "searches_per_user",
        }
    }
}

/// A budget's key: a user or channel id, or a client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    Id(i64),
    Ip(IpAddr),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Id(id) => write!(f, "{id}"),
            Key::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// One budget as a shared store sees it: its name (`limit:key`), the time one call
/// costs, and how many calls may come at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub name: String,
    pub period: Duration,
    pub burst: u32,
}

/// Budgets and failed sign-ins kept where every node sees them (Redis). Every method
/// answers `None` when the store cannot answer now; the limiter then uses this node's
/// own budgets.
pub trait SharedBudgets: Send + Sync + 'static {
    /// Takes one call from each of `budgets` if every one of them has it (then `Ok`);
    /// otherwise takes nothing and answers the budget (its index) with the longest wait.
    fn take<'a>(&'a self, budgets: &'a [Budget]) -> BoxFuture<'a, Option<std::result::Result<(), (usize, Duration)>>>;
    /// Failed sign-ins in a row for `account`, and how long ago the last one was.
    fn failures<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Option<(u32, Duration)>>;
    /// Records a failed sign-in (`ok = false`; kept for `keep`) or forgets them (`ok`).
    fn sign_in_result<'a>(&'a self, account: &'a str, ok: bool, keep: Duration) -> BoxFuture<'a, Option<()>>;
}

/// Checks between two sweeps that forget idle keys (a keyed budget's size is a walk over
/// its shards, too dear to ask on every send).
const SWEEP_EVERY: u64 = 65_536;
/// Accounts whose failed sign-ins are remembered at most (least recently failed go first).
const FAILED_ACCOUNTS: usize = 100_000;

pub struct Limiter {
    settings: RateLimits,
    shared: Option<Arc<dyn SharedBudgets>>,
    /// Indexed by `limit as usize`; `None` for a budget whose settings were refused.
    budgets: Vec<Option<DefaultKeyedRateLimiter<Key>>>,
    checks: AtomicU64,
    /// account → (failures in a row, when the last one was)
    failures: quick_cache::sync::Cache<String, (u32, Instant)>,
}

impl Limiter {
    pub fn new(settings: RateLimits) -> Self {
        let budgets = Limit::ALL.iter().map(|l| settings.rate(*l).quota().map(RateLimiter::keyed)).collect();
        Self {
            settings,
            shared: None,
            budgets,
            checks: AtomicU64::new(0),
            failures: quick_cache::sync::Cache::new(FAILED_ACCOUNTS),
        }
    }

    /// Keeps budgets and failed sign-ins in `shared` (every node's), this node's memory
    /// serving only while it does not answer.
    pub fn with_shared(mut self, shared: Arc<dyn SharedBudgets>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// No limits at all.
    pub fn off() -> Self {
        Self::new(RateLimits { enabled: false, ..RateLimits::default() })
    }

    pub fn client_ip_header(&self) -> Option<&str> {
        self.settings.client_ip_header.as_deref().filter(|h| !h.is_empty())
    }

    /// Takes one call from each `(limit, key)` budget, or refuses with the longest wait
    /// and takes nothing from the shared store (this node's own budgets, used while the
    /// store is away, are taken one by one until one refuses).
    pub async fn check(&self, budgets: &[(Limit, Key)]) -> Result<()> {
        if !self.settings.enabled {
            return Ok(());
        }
        if let Some(shared) = &self.shared {
            // settings were checked at start-up, so every limit has a period
            let (limits, named): (Vec<Limit>, Vec<Budget>) = budgets
                .iter()
                .filter_map(|(limit, key)| {
                    let rate = self.settings.rate(*limit);
                    let name = format!("{}:{key}", limit.name());
                    Some((*limit, Budget { name, period: rate.period()?, burst: rate.burst }))
                })
                .unzip();
            match shared.take(&named).await {
                Some(Ok(())) => return Ok(()),
                Some(Err((i, wait))) => return Err(refused(limits.get(i).map_or("rate", |l| l.name()), wait)),
                None => {}
            }
        }
        budgets.iter().try_for_each(|(limit, key)| self.check_here(*limit, *key))
    }

    /// This node's own budget of `limit` for `key`.
    fn check_here(&self, limit: Limit, key: Key) -> Result<()> {
        let Some(Some(budget)) = self.budgets.get(limit as usize) else { return Ok(()) };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            budget.retain_recent();
        }
        budget.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            refused(limit.name(), wait)
        })
    }

    /// Before verifying a password for `account`: refused while its back-off runs.
    pub async fn sign_in_allowed(&self, account: &str) -> Result<()> {
        if !self.settings.enabled {
            return Ok(());
        }
        let shared = match &self.shared {
            Some(s) => s.failures(account).await,
            None => None,
        };
        let (n, since) = match shared {
            Some(f) => f,
            None => match self.failures.get(account) {
                Some((n, last)) => (n, last.elapsed()),
                None => return Ok(()),
            },
        };
        let wait = self.backoff(n).saturating_sub(since);
        if wait.is_zero() { Ok(()) } else { Err(refused("sign_in_failures_per_account", wait)) }
    }

    /// After a sign-in for `account` failed (`ok = false`) or succeeded.
    pub async fn sign_in_result(&self, account: &str, ok: bool) {
        if !self.settings.enabled {
            return;
        }
        if let Some(shared) = &self.shared {
            let keep = Duration::from_secs(self.settings.sign_in_max_backoff_secs.saturating_mul(2));
            if shared.sign_in_result(account, ok, keep).await.is_some() {
                return;
            }
        }
        if ok {
            self.failures.remove(account);
        } else {
            let n = self.failures.get(account).map_or(0, |(n, _)| n);
            self.failures.insert(account.to_owned(), (n.saturating_add(1), Instant::now()));
        }
    }

    /// How long after the last failure the next attempt must wait, with `n` failures in a row.
    fn backoff(&self, n: u32) -> Duration {
        let over = n.saturating_sub(self.settings.sign_in_free_failures);
        if over == 0 {
            return Duration::ZERO;
        }
        let secs = 1u64.checked_shl(over - 1).unwrap_or(u64::MAX);
        Duration::from_secs(secs.min(self.settings.sign_in_max_backoff_secs))
    }
}

fn refused(limit: &'static str, wait: Duration) -> Error {
    metrics::counter!("rate_limited_total", "limit" => limit).increment(1);
    Error::RateLimited { limit, retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tight() -> Limiter {
        Limiter::new(RateLimits { sends_per_user: Rate::new(1, 3600, 3), ..RateLimits::default() })
    }

    #[test]
    fn a_budget_allows_its_burst_then_refuses_with_the_wait() {
        let l = tight();
        let check = |limit, key| futures::executor::block_on(l.check(&[(limit, key)]));
        for _ in 0..3 {
            assert!(check(Limit::SendsPerUser, Key::Id(1)).is_ok());
        }
        match check(Limit::SendsPerUser, Key::Id(1)) {
            Err(Error::RateLimited { limit, retry_after_secs }) => {
                assert_eq!(limit, "sends_per_user");
                assert!((3500..=3600).contains(&retry_after_secs), "{retry_after_secs}");
            }
            other => panic!("{other:?}"),
        }
        assert!(check(Limit::SendsPerUser, Key::Id(2)).is_ok(), "another user has a budget of its own");
    }

    #[test]
    fn failed_sign_ins_back_off_growing_and_a_success_resets() {
        let l = Limiter::new(RateLimits { sign_in_free_failures: 2, ..RateLimits::default() });
        assert_eq!(l.backoff(2), Duration::ZERO);
        assert_eq!(l.backoff(3), Duration::from_secs(1));
        assert_eq!(l.backoff(5), Duration::from_secs(4));
        assert_eq!(l.backoff(40), Duration::from_secs(900), "capped");
        let allowed = |a| futures::executor::block_on(l.sign_in_allowed(a));
        let result = |a, ok| futures::executor::block_on(l.sign_in_result(a, ok));
        for _ in 0..2 {
            assert!(allowed("a@x").is_ok());
            result("a@x", false);
        }
        assert!(allowed("a@x").is_ok(), "two failures are free");
        result("a@x", false);
        assert!(allowed("a@x").is_err(), "the third starts the back-off");
        assert!(allowed("b@x").is_ok(), "per account");
        result("a@x", true);
        assert!(allowed("a@x").is_ok());
    }

    #[test]
    fn off_allows_everything_and_bad_settings_are_named() {
        let l = Limiter::off();
        for _ in 0..1000 {
            assert!(futures::executor::block_on(l.check(&[(Limit::SendsPerUser, Key::Id(1))])).is_ok());
        }
        let bad = RateLimits { searches_per_user: Rate::new(0, 1, 1), ..RateLimits::default() };
        assert!(bad.problems().iter().any(|p| p.starts_with("rate_limits.searches_per_user")));
        assert!(RateLimits::default().problems().is_empty());
    }
}
