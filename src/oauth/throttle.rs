//! The backoff after consecutive failed logins: how long an account is refused once it has
//! failed `max_failures` times in a row. The count itself is kept by the store, shared by
//! every instance; the store applies this rule in the transaction that counts the failure.

/// The refusal after `failures` unproven attempts: 2 s at the limit, doubling per extra
/// attempt, capped at `max_backoff` seconds.
pub fn backoff(failures: i64, max_failures: u32, max_backoff: i64) -> i64 {
    let extra = u32::try_from(failures - i64::from(max_failures))
        .unwrap_or(30)
        .min(30);
    (2i64 << extra).min(max_backoff)
}

/// Until when an account that has now failed `failures` times in a row is locked, counted from
/// `now`; `None` below the limit.
pub fn lock_until(failures: i64, now: i64, max_failures: u32, max_backoff: i64) -> Option<i64> {
    (failures >= i64::from(max_failures))
        .then(|| now.saturating_add(backoff(failures, max_failures, max_backoff)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(5, 5, 900), 2);
        assert_eq!(backoff(6, 5, 900), 4);
        assert_eq!(backoff(7, 5, 900), 8);
        assert_eq!(backoff(20, 5, 900), 900);
        assert_eq!(backoff(500, 5, 900), 900);
    }

    #[test]
    fn locks_only_at_the_limit() {
        assert_eq!(lock_until(4, 100, 5, 900), None);
        assert_eq!(lock_until(5, 100, 5, 900), Some(102));
        assert_eq!(lock_until(6, i64::MAX - 1, 5, 900), Some(i64::MAX));
    }
}
