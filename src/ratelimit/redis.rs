//! The shared limiter: one atomic Lua script per request on Redis (`redis/budgets.lua`), so
//! that N instances never admit more than any budget of a request allows — the key's window,
//! the key's quota, the tenant's quota. Periods are computed from Redis's clock (`TIME`), so
//! instances with skewed clocks still agree; each counter and its expiry are set in one step
//! (`SET … EXAT`). On a Redis Cluster, every budget of a request shares the tenant's hash tag,
//! and so one slot and one script.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;

use super::{Budget, BudgetName, Budgets, LimitError, QuotaOf, QuotaSeeds, RateLimiter, UpToThree, Verdict, decide};
use crate::model::{Period, QuotaUsed};
use crate::time::now_millis;

/// Every budget of one request, decided in one step on Redis's clock (`TIME`). KEYS: one
/// counter prefix per budget, all with the tenant's `{hash tag}` so that they share a cluster
/// slot. ARGV, five per key: the limit; the period (a window's seconds, `day` or `month`, UTC
/// calendar periods); this instance's bounds of a quota's period (`0 0` for a window), taken
/// when Redis's clock is inside them, else computed by the script; and a seed for a quota's
/// count where Redis holds none, for the period of those bounds (`-1`: none yet). A quota
/// without a count or a seed for the period decides nothing and answers -1 for its count: the
/// caller reads the seed from the store's usage counts and asks again. Otherwise, when every
/// budget has room, each counts once; a refused request leaves all of them as they were.
/// Answers Redis's time in milliseconds, then per budget its count before this request and
/// its period's start and end (Unix seconds).
const SCRIPT: &str = include_str!("redis/budgets.lua");

mod connection;

use connection::Connections;

pub struct RedisLimiter {
    connections: Connections,
    script: Script,
    seeds: QuotaSeeds,
    /// A backend slower than this counts as failed (`rate_limit.timeout_ms`;
    /// `rate_limit.on_backend_error` decides).
    timeout: Duration,
}

fn failed(error: impl std::fmt::Display) -> LimitError {
    LimitError(error.to_string())
}

impl RedisLimiter {
    /// Prepares connections to `url` (`redis://host:port`, `rediss://` over TLS,
    /// `unix:///path`, `redis+cluster://host1:7000,host2:7000`); they are made on first use, so
    /// keygate starts even while Redis is down. `ca_file`: for TLS, the authorities to trust
    /// instead of the system's. `timeout` bounds connecting and each answer.
    pub fn new(url: &str, ca_file: Option<&str>, timeout: Duration, seeds: QuotaSeeds) -> Result<Self, LimitError> {
        let connections = Connections::new(url, ca_file, timeout).map_err(failed)?;
        let limiter = Self { connections, script: Script::new(SCRIPT), seeds, timeout };
        // A bad URL is refused here, at start-up, rather than on the first request.
        limiter.connections.get().map_err(failed)?;
        Ok(limiter)
    }
}

/// The counter prefix of one budget: under the tenant's hash tag, so that a request's
/// budgets share one cluster slot (SPEC §13).
fn counter(name: BudgetName, tenant_id: &str, key_id: &str, period: Option<Period>) -> String {
    match (name, period) {
        (BudgetName::Window, _) => format!("keygate:rl:{{{tenant_id}}}:window:{key_id}"),
        (BudgetName::KeyQuota, Some(period)) => format!("keygate:rl:{{{tenant_id}}}:key:{key_id}:{}", period.as_str()),
        (_, period) => format!("keygate:rl:{{{tenant_id}}}:tenant:{}", period.map_or("", Period::as_str)),
    }
}

/// One budget as the script is given it.
struct Asked {
    name: BudgetName,
    counter: String,
    limit: u64,
    period: Asking,
}

/// A budget's period as the script takes it.
#[derive(Clone, Copy)]
enum Asking {
    /// A window of this many seconds, on Redis's clock.
    Window(u64),
    /// A quota's period, with this instance's bounds for it (Unix seconds), which the script
    /// takes when Redis's clock is inside them.
    Quota(Period, (i64, i64)),
}

impl RedisLimiter {
    /// Runs the script once: `seeds` are the counts to start quotas from (`None` where not
    /// known), each for the period of its budget's bounds.
    async fn run(&self, asked: &[Asked], seeds: &[Option<u64>]) -> Result<Vec<i64>, LimitError> {
        let mut connection = self.connections.get().map_err(failed)?;
        let mut invocation = self.script.prepare_invoke();
        for (budget, seed) in asked.iter().zip(seeds) {
            invocation.key(&budget.counter).arg(budget.limit);
            match budget.period {
                Asking::Window(seconds) => invocation.arg(seconds).arg(0).arg(0),
                Asking::Quota(period, (start, end)) => invocation.arg(period.as_str()).arg(start).arg(end),
            };
            invocation.arg(seed.map_or(-1, |count| count as i64));
        }
        let call = connection.invoke::<Vec<i64>>(&invocation);
        let answer =
            tokio::time::timeout(self.timeout, call).await.map_err(|_| failed("timed out"))?.map_err(failed)?;
        if answer.len() != 1 + 3 * asked.len() {
            return Err(failed("the limiter script answered in an unknown shape"));
        }
        Ok(answer)
    }

    async fn hit_budgets(&self, budgets: &Budgets<'_>) -> Result<Verdict, LimitError> {
        let (tenant_id, key_id) = (budgets.tenant_id, budgets.key_id);
        let mut asked = vec![Asked {
            name: BudgetName::Window,
            counter: counter(BudgetName::Window, tenant_id, key_id, None),
            limit: budgets.window.limit,
            period: Asking::Window(budgets.window.window_seconds),
        }];
        let now = now_millis();
        let quotas = [(BudgetName::KeyQuota, budgets.key_quota), (BudgetName::TenantQuota, budgets.tenant_quota)];
        for (name, quota) in quotas {
            if let Some(quota) = quota {
                asked.push(Asked {
                    name,
                    counter: counter(name, tenant_id, key_id, Some(quota.period)),
                    limit: quota.limit,
                    period: Asking::Quota(quota.period, quota.period.bounds(now)),
                });
            }
        }
        let mut seeds = vec![None; asked.len()];
        let mut answer = self.run(&asked, &seeds).await?;
        if (0..asked.len()).any(|i| answer[1 + 3 * i] < 0) {
            // Some quota has no count on Redis for its period: seed it from the store, for the
            // period Redis's clock is in, once.
            for (i, budget) in asked.iter_mut().enumerate() {
                let (count, start, end) = (answer[1 + 3 * i], answer[2 + 3 * i], answer[3 + 3 * i]);
                if let (true, Asking::Quota(period, _)) = (count < 0, budget.period) {
                    let of = match budget.name {
                        BudgetName::KeyQuota => budgets.key(),
                        _ => budgets.tenant(),
                    };
                    seeds[i] = Some(self.seeds.count(of, start, end).await?);
                    budget.period = Asking::Quota(period, (start, end));
                }
            }
            answer = self.run(&asked, &seeds).await?;
            if (0..asked.len()).any(|i| answer[1 + 3 * i] < 0) {
                return Err(failed("a quota's period turned while it was seeded; retry"));
            }
        }
        let now_ms = answer[0];
        let list: UpToThree<Budget> = asked
            .iter()
            .enumerate()
            .map(|(i, budget)| Budget {
                name: budget.name,
                limit: budget.limit,
                count_before: answer[1 + 3 * i] as u64,
                start: answer[2 + 3 * i],
                end: answer[3 + 3 * i],
            })
            .collect();
        // The script decided with these same numbers; `decide` restates it for the headers.
        Ok(decide(&list, now_ms))
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn hit(&self, budgets: &Budgets<'_>) -> Result<Verdict, LimitError> {
        self.hit_budgets(budgets).await
    }

    async fn used(&self, of: QuotaOf<'_>, period: Period) -> Result<QuotaUsed, LimitError> {
        let (start, end) = period.bounds(now_millis());
        let prefix = match of {
            QuotaOf::Key { tenant_id, key_id } => counter(BudgetName::KeyQuota, tenant_id, key_id, Some(period)),
            QuotaOf::Tenant(tenant_id) => counter(BudgetName::TenantQuota, tenant_id, "", Some(period)),
        };
        let mut connection = self.connections.get().map_err(failed)?;
        let command = redis::cmd("GET").arg(format!("{prefix}:{end}")).to_owned();
        let get = connection.query::<Option<u64>>(&command);
        let held = tokio::time::timeout(self.timeout, get).await.map_err(|_| failed("timed out"))?.map_err(failed)?;
        let used = match held {
            Some(count) => count,
            None => self.seeds.count(of, start, end).await?,
        };
        Ok(QuotaUsed { used, resets_at: end * 1000 })
    }

    async fn ping(&self) -> Result<(), LimitError> {
        let mut connection = self.connections.get().map_err(failed)?;
        let command = redis::cmd("PING");
        let ping = connection.query::<String>(&command);
        tokio::time::timeout(self.timeout, ping).await.map_err(|_| failed("timed out"))?.map_err(failed)?;
        Ok(())
    }
}
