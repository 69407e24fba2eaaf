//! Events an unauthenticated caller can trigger at HTTP speed (failed client authentication,
//! malformed logins) are recorded at most once per key and second on each instance, with a
//! count of what was folded in, so a flood cannot bloat the audit log or crowd out real events.

use std::collections::HashMap;
use std::sync::Mutex;

/// Keys remembered at once; past this the memory is cleared (costing a few extra rows).
const MAX_KEYS: usize = 10_000;

#[derive(Default)]
pub struct AuditLimiter {
    seen: Mutex<HashMap<String, (i64, u64)>>,
}

impl AuditLimiter {
    /// `Some(folded)` when an event for `key` should be written now, with how many were
    /// folded into it since the last one; `None` when it is folded into the next.
    pub fn admit(&self, key: &str, now: i64) -> Option<u64> {
        let mut seen = match self.seen.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if seen.len() >= MAX_KEYS && !seen.contains_key(key) {
            seen.clear();
        }
        match seen.get_mut(key) {
            Some((second, folded)) if *second == now => {
                *folded += 1;
                None
            }
            Some(entry) => {
                let folded = entry.1;
                *entry = (now, 0);
                Some(folded)
            }
            None => {
                seen.insert(key.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_key_and_second() {
        let limiter = AuditLimiter::default();
        assert_eq!(limiter.admit("a", 10), Some(0));
        assert_eq!(limiter.admit("a", 10), None);
        assert_eq!(limiter.admit("a", 10), None);
        assert_eq!(limiter.admit("b", 10), Some(0));
        assert_eq!(limiter.admit("a", 11), Some(2));
    }
}
