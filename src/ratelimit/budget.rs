//! The budgets of step 4 (SPEC §13), decided together: the key's rate-limit window, the key's
//! quota and the tenant's quota. A request is admitted only when every budget has room, and
//! then counts once in each; a refused one counts in none. The headers describe the budget with
//! the fewest requests left after this one (ties: the one that resets first).
//!
//! This is the rule alone, on counts the backend read: the in-process limiter applies it under
//! its shards' locks, and the Redis script applies the same rule, which this function then
//! restates for the headers from the counts the script answered.

use super::window::Quota;
use crate::time::Millis;

/// Which budget a figure is of; the names are those of the IETF headers (SPEC §13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetName {
    Window,
    KeyQuota,
    TenantQuota,
}

impl BudgetName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Window => "window",
            Self::KeyQuota => "key-quota",
            Self::TenantQuota => "tenant-quota",
        }
    }
}

/// One budget of a request as the backend found it: its limit, its period's bounds (Unix
/// seconds) and how many requests it had counted before this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub name: BudgetName,
    pub limit: u64,
    pub start: i64,
    pub end: i64,
    pub count_before: u64,
}

/// A budget after the decision: what `X-RateLimit-*` and the IETF headers say of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub name: BudgetName,
    pub limit: u64,
    /// After this request; never below 0.
    pub remaining: u64,
    /// Unix seconds at which the period ends.
    pub reset: i64,
    /// The period's own length in seconds (a calendar month's, for a monthly quota).
    pub period_seconds: i64,
}

/// A request's budgets, or what is made of each: a window and up to two quotas, inline.
pub type UpToThree<T> = smallvec::SmallVec<[T; 3]>;

/// The decision over every budget of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// The headline for `X-RateLimit-*`; on a refusal its `retry_after` waits for the reset of
    /// the budget that refused (the latest, when several have no room).
    pub quota: Quota,
    /// Every budget, in the order given: window, key quota, tenant quota (at most three, so
    /// held inline: a verdict is made for every judged request).
    pub budgets: UpToThree<Standing>,
    /// On a refusal, the budget whose reset `Retry-After` waits for.
    pub refused_by: Option<BudgetName>,
}

/// Decides a request against `budgets` (at least one: the window) at `now`.
pub fn decide(budgets: &[Budget], now: Millis) -> Verdict {
    let allowed = budgets.iter().all(|budget| budget.count_before < budget.limit);
    let standings: UpToThree<Standing> = budgets
        .iter()
        .map(|budget| {
            let count = if allowed { budget.count_before + 1 } else { budget.count_before };
            Standing {
                name: budget.name,
                limit: budget.limit,
                remaining: budget.limit.saturating_sub(count),
                reset: budget.end,
                period_seconds: budget.end - budget.start,
            }
        })
        .collect();
    let headline = standings.iter().min_by_key(|standing| (standing.remaining, standing.reset));
    let until = |reset: i64| ((reset * 1000 - now).max(0) as u64).div_ceil(1000).max(1);
    let refusing = budgets.iter().filter(|budget| budget.count_before >= budget.limit).max_by_key(|budget| budget.end);
    let refusing_reset = refusing.map(|budget| budget.end);
    let quota = match headline {
        Some(headline) => Quota {
            allowed,
            limit: headline.limit,
            remaining: headline.remaining,
            reset: headline.reset,
            retry_after: until(refusing_reset.unwrap_or(headline.reset)),
        },
        None => Quota { allowed, limit: 0, remaining: 0, reset: now.div_euclid(1000) + 1, retry_after: 1 },
    };
    Verdict { allowed, quota, budgets: standings, refused_by: refusing.map(|budget| budget.name) }
}

/// `RateLimit-Policy` and `RateLimit` as draft-ietf-httpapi-ratelimit-headers writes them
/// (SPEC §13): one item per budget, `q` its limit and `w` its period in seconds; `r` what is
/// left and `t` the seconds until it resets.
pub fn ietf_headers(budgets: &[Standing], now: Millis) -> (String, String) {
    let policy: Vec<String> =
        budgets.iter().map(|b| format!("\"{}\";q={};w={}", b.name.as_str(), b.limit, b.period_seconds)).collect();
    let left: Vec<String> = budgets
        .iter()
        .map(|b| {
            let until = ((b.reset * 1000 - now).max(0) as u64).div_ceil(1000);
            format!("\"{}\";r={};t={}", b.name.as_str(), b.remaining, until)
        })
        .collect();
    (policy.join(", "), left.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Period;

    /// 2026-02-14T10:30:00Z.
    const NOW: Millis = 1_771_065_000_000;
    const FEB_14: i64 = 1_771_027_200;
    const FEB_15: i64 = 1_771_113_600;
    const FEB_1: i64 = 1_769_904_000;
    const MAR_1: i64 = 1_772_323_200;

    #[test]
    fn periods_are_utc_calendar_days_and_months() {
        assert_eq!(Period::Day.bounds(NOW), (FEB_14, FEB_15));
        assert_eq!(Period::Month.bounds(NOW), (FEB_1, MAR_1));
        assert_eq!(MAR_1 - FEB_1, 28 * 86_400, "a month is its own length");
        // The last millisecond of a period is in it; the next one starts the next.
        assert_eq!(Period::Day.bounds(FEB_15 * 1000 - 1).1, FEB_15);
        assert_eq!(Period::Day.bounds(FEB_15 * 1000).0, FEB_15);
        let (december, next_year) = Period::Month.bounds(1_797_724_800_000); // 2026-12-20
        assert_eq!((december, next_year), (1_796_083_200, 1_798_761_600));
        assert_eq!(Period::parse("week"), None);
        assert_eq!(Period::parse("month").map(Period::as_str), Some("month"));
    }

    fn budget(name: BudgetName, limit: u64, (start, end): (i64, i64), count_before: u64) -> Budget {
        Budget { name, limit, start, end, count_before }
    }

    #[test]
    fn a_request_counts_in_every_budget_or_in_none() {
        let window = budget(BudgetName::Window, 100, (NOW / 1000 - 30, NOW / 1000 + 30), 10);
        let tenant = budget(BudgetName::TenantQuota, 1_000, (FEB_1, MAR_1), 999);
        let admitted = decide(&[window, tenant], NOW);
        assert!(admitted.allowed);
        assert_eq!(admitted.budgets.iter().map(|b| b.remaining).collect::<Vec<_>>(), [89, 0]);
        // The tenant quota has the fewest left: it is the headline.
        assert_eq!((admitted.quota.limit, admitted.quota.remaining, admitted.quota.reset), (1_000, 0, MAR_1));

        let full = budget(BudgetName::TenantQuota, 1_000, (FEB_1, MAR_1), 1_000);
        let refused = decide(&[window, full], NOW);
        assert!(!refused.allowed);
        assert_eq!(refused.budgets[0].remaining, 90, "a refused request does not count in the window");
        assert_eq!(refused.quota.retry_after, (MAR_1 - NOW / 1000) as u64, "waits for the quota that refused");
    }

    #[test]
    fn ties_go_to_the_budget_that_resets_first_and_retry_after_to_the_one_that_refused() {
        let window = budget(BudgetName::Window, 10, (NOW / 1000 - 50, NOW / 1000 + 10), 9);
        let key = budget(BudgetName::KeyQuota, 50, (FEB_14, FEB_15), 49);
        let admitted = decide(&[window, key], NOW);
        assert_eq!((admitted.quota.remaining, admitted.quota.reset), (0, NOW / 1000 + 10));

        let window_full = budget(BudgetName::Window, 10, (NOW / 1000 - 50, NOW / 1000 + 10), 10);
        let key_full = budget(BudgetName::KeyQuota, 50, (FEB_14, FEB_15), 50);
        let both = decide(&[window_full, key_full], NOW);
        assert_eq!(both.quota.reset, NOW / 1000 + 10, "the headline is the one resetting first");
        assert_eq!(both.quota.retry_after, (FEB_15 - NOW / 1000) as u64, "but room comes back only at the later");
        let window_only = decide(&[window_full, key], NOW);
        assert_eq!(window_only.quota.retry_after, 10);
    }

    #[test]
    fn a_window_alone_decides_as_before_and_a_denied_request_does_not_count() {
        // The assertions of the window's own rule, which this rule replaced.
        let rate = crate::model::RateLimit { limit: 2, window_seconds: 60 };
        let window = |count, now| {
            let end = crate::ratelimit::window_end(rate, now);
            decide(&[budget(BudgetName::Window, 2, (end - 60, end), count)], now)
        };
        let first = window(0, 10_000);
        assert!(first.allowed);
        assert_eq!((first.quota.remaining, first.quota.reset, first.quota.retry_after), (1, 60, 50));
        let second = window(1, 59_500);
        assert!(second.allowed);
        assert_eq!((second.quota.remaining, second.quota.retry_after), (0, 1));
        let third = window(2, 59_999);
        assert!(!third.allowed);
        assert_eq!((third.quota.remaining, third.quota.retry_after), (0, 1));
    }

    #[test]
    fn the_ietf_headers_name_each_budget() {
        let window = budget(BudgetName::Window, 600, (NOW / 1000 - 43, NOW / 1000 + 17), 558);
        let tenant = budget(BudgetName::TenantQuota, 10_000, (FEB_1, MAR_1), 879);
        let verdict = decide(&[window, tenant], NOW);
        let (policy, left) = ietf_headers(&verdict.budgets, NOW);
        assert_eq!(policy, "\"window\";q=600;w=60, \"tenant-quota\";q=10000;w=2419200");
        assert_eq!(left, format!("\"window\";r=41;t=17, \"tenant-quota\";r=9120;t={}", MAR_1 - NOW / 1000));
    }
}
