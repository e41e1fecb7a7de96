//! The shared limiter: one atomic Lua script per request on Redis, so that N instances never
//! admit more than `limit` requests of a key in a window. The window is computed from Redis's
//! clock (`TIME`), so instances with skewed clocks still agree; the counter and its expiry are
//! set in one step (`SET … EXAT`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Budget, BudgetName, Budgets, LimitError, QuotaOf, QuotaSeeds, RateLimiter, Verdict, decide};
use crate::model::{Period, QuotaUsed};
use crate::time::now_millis;

/// A backend slower than this counts as failed (`rate_limit.on_backend_error` decides).
const TIMEOUT: Duration = Duration::from_millis(250);

/// Every budget of one request, decided in one step on Redis's clock (`TIME`). KEYS: one
/// counter prefix per budget, all with the tenant's `{hash tag}` so that they share a cluster
/// slot. ARGV, three per key: the limit; the period (a window's seconds, `day` or `month`, UTC
/// calendar periods); and a seed for a quota's count where Redis holds none, with the end of
/// the period it is for (`-1 0`: none yet). A quota without a count or a seed for the period
/// decides nothing and answers -1 for its count: the caller reads the seed from the store's
/// usage counts and asks again. Otherwise, when every budget has room, each counts once; a
/// refused request leaves all of them as they were. Answers Redis's time in milliseconds, then
/// per budget its count before this request and its period's start and end (Unix seconds).
const SCRIPT: &str = r"
local time = redis.call('TIME')
local now_s = tonumber(time[1])
local now_ms = now_s * 1000 + math.floor(tonumber(time[2]) / 1000)

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
end

-- The UTC calendar month holding day number `days`, as Unix seconds [start, end).
local function month_of(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  local next_y, next_m = y, m + 1
  if next_m == 13 then next_y, next_m = y + 1, 1 end
  return days_from_civil(y, m, 1) * 86400, days_from_civil(next_y, next_m, 1) * 86400
end

local counters, counts, starts, ends, limits = {}, {}, {}, {}, {}
local complete = true
for i = 1, #KEYS do
  local limit, period = tonumber(ARGV[3 * i - 2]), ARGV[3 * i - 1]
  local seed, seed_end = string.match(ARGV[3 * i], '^(-?%d+) (%d+)$')
  local s, e
  if period == 'day' then
    s = now_s - now_s % 86400
    e = s + 86400
  elseif period == 'month' then
    s, e = month_of(math.floor(now_s / 86400))
  else
    local w = tonumber(period)
    e = now_s - now_s % w + w
    s = e - w
  end
  local counter = KEYS[i] .. ':' .. e
  local count = tonumber(redis.call('GET', counter) or '-1')
  if count < 0 then
    if period ~= 'day' and period ~= 'month' then
      count = 0
    elseif tonumber(seed) >= 0 and tonumber(seed_end) == e then
      count = tonumber(seed)
    else
      complete = false
    end
  end
  counters[i], counts[i], starts[i], ends[i], limits[i] = counter, count, s, e, limit
end
if complete then
  local room = true
  for i = 1, #KEYS do
    if counts[i] >= limits[i] then room = false end
  end
  if room then
    for i = 1, #KEYS do
      redis.call('SET', counters[i], counts[i] + 1, 'EXAT', ends[i] + 1)
    end
  end
end
local answer = {now_ms}
for i = 1, #KEYS do
  answer[#answer + 1] = counts[i]
  answer[#answer + 1] = starts[i]
  answer[#answer + 1] = ends[i]
end
return answer
";

pub struct RedisLimiter {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// Tells this limiter's connections from another's (tests run many in one process).
    id: u64,
    script: Script,
    seeds: QuotaSeeds,
}

thread_local! {
    /// Each thread's own connection of each limiter. A serving thread's requests then wait on
    /// a connection that the same thread drives, never on one driven by another thread (the
    /// serving model of docs/design.md); a thread's connections end with it.
    static CONNECTIONS: RefCell<HashMap<u64, ConnectionManager>> = RefCell::new(HashMap::new());
}

fn failed(error: impl std::fmt::Display) -> LimitError {
    LimitError(error.to_string())
}

impl RedisLimiter {
    /// Prepares a connection to `url` (`redis://host:port`, `rediss://` over TLS,
    /// `unix:///path`); it is made on first use, so keygate starts even while Redis is down.
    /// `ca_file`: for `rediss://`, the authorities to trust instead of the system's.
    pub fn new(url: &str, ca_file: Option<&str>, seeds: QuotaSeeds) -> Result<Self, LimitError> {
        let client = match ca_file {
            None => redis::Client::open(url).map_err(failed)?,
            Some(file) => {
                let root_cert = std::fs::read(file).map_err(|e| failed(format!("rate_limit.ca_file {file}: {e}")))?;
                let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) };
                redis::Client::build_with_tls(url, certificates).map_err(failed)?
            }
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1);
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let limiter =
            Self { client, config, id: NEXT_ID.fetch_add(1, Ordering::Relaxed), script: Script::new(SCRIPT), seeds };
        // A bad URL is refused here, at start-up, rather than on the first request.
        limiter.connection()?;
        Ok(limiter)
    }

    /// This thread's connection, made (lazily: it connects on first use) if it has none.
    fn connection(&self) -> Result<ConnectionManager, LimitError> {
        CONNECTIONS.with_borrow_mut(|connections| {
            if let Some(connection) = connections.get(&self.id) {
                return Ok(connection.clone());
            }
            let connection =
                ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone()).map_err(failed)?;
            connections.insert(self.id, connection.clone());
            Ok(connection)
        })
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
    period: String,
}

impl RedisLimiter {
    /// Runs the script once: `seeds` are (count, period end) per budget, `None` where not known.
    async fn run(&self, asked: &[Asked], seeds: &[Option<(u64, i64)>]) -> Result<Vec<i64>, LimitError> {
        let mut connection = self.connection()?;
        let mut invocation = self.script.prepare_invoke();
        for (budget, seed) in asked.iter().zip(seeds) {
            let (count, end) = seed.map_or((-1, 0), |(count, end)| (count as i64, end));
            invocation.key(&budget.counter).arg(budget.limit).arg(&budget.period).arg(format!("{count} {end}"));
        }
        let call = invocation.invoke_async::<Vec<i64>>(&mut connection);
        let answer = tokio::time::timeout(TIMEOUT, call).await.map_err(|_| failed("timed out"))?.map_err(failed)?;
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
            period: budgets.window.window_seconds.to_string(),
        }];
        let quotas = [(BudgetName::KeyQuota, budgets.key_quota), (BudgetName::TenantQuota, budgets.tenant_quota)];
        for (name, quota) in quotas {
            if let Some(quota) = quota {
                asked.push(Asked {
                    name,
                    counter: counter(name, tenant_id, key_id, Some(quota.period)),
                    limit: quota.limit,
                    period: quota.period.as_str().to_owned(),
                });
            }
        }
        let mut seeds = vec![None; asked.len()];
        let mut answer = self.run(&asked, &seeds).await?;
        if (0..asked.len()).any(|i| answer[1 + 3 * i] < 0) {
            // Some quota has no count on Redis for its period: seed it from the store, once.
            for (i, budget) in asked.iter().enumerate() {
                let (count, start, end) = (answer[1 + 3 * i], answer[2 + 3 * i], answer[3 + 3 * i]);
                if count < 0 {
                    let of = match budget.name {
                        BudgetName::KeyQuota => budgets.key(),
                        _ => budgets.tenant(),
                    };
                    seeds[i] = Some((self.seeds.count(of, start, end).await?, end));
                }
            }
            answer = self.run(&asked, &seeds).await?;
            if (0..asked.len()).any(|i| answer[1 + 3 * i] < 0) {
                return Err(failed("a quota's period turned while it was seeded; retry"));
            }
        }
        let now_ms = answer[0];
        let list: Vec<Budget> = asked
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
        let mut connection = self.connection()?;
        let command = redis::cmd("GET").arg(format!("{prefix}:{end}")).to_owned();
        let get = command.query_async::<Option<u64>>(&mut connection);
        let held = tokio::time::timeout(TIMEOUT, get).await.map_err(|_| failed("timed out"))?.map_err(failed)?;
        let used = match held {
            Some(count) => count,
            None => self.seeds.count(of, start, end).await?,
        };
        Ok(QuotaUsed { used, resets_at: end * 1000 })
    }

    async fn ping(&self) -> Result<(), LimitError> {
        let mut connection = self.connection()?;
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        tokio::time::timeout(TIMEOUT, ping).await.map_err(|_| failed("timed out"))?.map_err(failed)?;
        Ok(())
    }
}
