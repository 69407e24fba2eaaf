//! What a refresh token that could not be claimed deserves (RFC 9700 §4.14.2). The store says
//! how the token stands; these rules say which refusal that is, and whether the family must be
//! revoked. The claim itself (not rotated, not expired, family live and the presenter's, user
//! enabled) is a compare-and-set the store runs inside its rotation statement, since two uses
//! of one token must never both win: see `store::rotation::claimable`.

use crate::store::RefreshLookup;

/// Why a presented refresh token was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    Unknown,
    /// Issued to another client: stolen, or leaked between clients. The family is revoked.
    WrongClient {
        username: String,
        family_id: String,
        owner_client: String,
    },
    Revoked {
        username: String,
    },
    /// Presented again inside the grace window (a retry whose answer was lost): refused, the
    /// family left alone.
    ReusedWithinGrace {
        username: String,
    },
    /// Presented again after the grace window: someone else may hold its successor, so the
    /// family is revoked.
    Reused {
        username: String,
        family_id: String,
    },
    UserDisabled {
        username: String,
    },
    Expired {
        username: String,
    },
}

/// Judges a token the claim did not take. `grace_cutoff`: a token rotated at or after this is
/// inside the grace window. The order matters: a token presented by the wrong client is theft
/// whatever else is true of it, and a revoked family is not revoked again.
pub(super) fn judge(found: Option<RefreshLookup>, client_id: &str, grace_cutoff: i64) -> Refusal {
    let Some(found) = found else {
        return Refusal::Unknown;
    };
    let username = found.username.clone();
    if found.client_id != client_id {
        return Refusal::WrongClient {
            username,
            family_id: found.family_id,
            owner_client: found.client_id,
        };
    }
    if found.revoked_at.is_some() {
        return Refusal::Revoked { username };
    }
    if let Some(rotated_at) = found.rotated_at {
        if rotated_at >= grace_cutoff {
            return Refusal::ReusedWithinGrace { username };
        }
        return Refusal::Reused {
            username,
            family_id: found.family_id,
        };
    }
    if found.user_disabled() {
        return Refusal::UserDisabled { username };
    }
    Refusal::Expired { username }
}

/// The grace cut-off for a reuse grace of `grace` seconds at `now`; none when `grace` is 0.
pub(super) fn grace_cutoff(now: i64, grace: i64) -> i64 {
    if grace > 0 { now - grace } else { i64::MAX }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> RefreshLookup {
        RefreshLookup {
            family_id: "fam".into(),
            user_id: "u1".into(),
            username: "alice".into(),
            client_id: "app".into(),
            scope: "read".into(),
            issued_at: 100,
            idle_expires_at: 200,
            rotated_at: None,
            family_expires_at: 1000,
            revoked_at: None,
            disabled: 0,
        }
    }

    fn alice() -> String {
        "alice".into()
    }

    #[test]
    fn unknown_token() {
        assert_eq!(judge(None, "app", 0), Refusal::Unknown);
    }

    #[test]
    fn another_clients_token_is_theft_even_when_revoked_or_rotated() {
        let mut t = token();
        t.revoked_at = Some(5);
        t.rotated_at = Some(5);
        assert_eq!(
            judge(Some(t), "other", 0),
            Refusal::WrongClient {
                username: alice(),
                family_id: "fam".into(),
                owner_client: "app".into()
            }
        );
    }

    #[test]
    fn revoked_before_reuse() {
        let mut t = token();
        t.revoked_at = Some(5);
        t.rotated_at = Some(5);
        assert_eq!(
            judge(Some(t), "app", 0),
            Refusal::Revoked { username: alice() }
        );
    }

    #[test]
    fn reuse_inside_and_after_the_grace_window() {
        let mut t = token();
        t.rotated_at = Some(150);
        assert_eq!(
            judge(Some(t.clone()), "app", 150),
            Refusal::ReusedWithinGrace { username: alice() }
        );
        assert_eq!(
            judge(Some(t.clone()), "app", 151),
            Refusal::Reused {
                username: alice(),
                family_id: "fam".into()
            }
        );
        assert_eq!(
            judge(Some(t), "app", grace_cutoff(400, 0)),
            Refusal::Reused {
                username: alice(),
                family_id: "fam".into()
            }
        );
    }

    #[test]
    fn disabled_user_then_expiry() {
        let mut t = token();
        t.disabled = 1;
        assert_eq!(
            judge(Some(t), "app", 0),
            Refusal::UserDisabled { username: alice() }
        );
        assert_eq!(
            judge(Some(token()), "app", 0),
            Refusal::Expired { username: alice() }
        );
    }

    #[test]
    fn grace_cutoff_zero_means_none() {
        assert_eq!(grace_cutoff(1000, 0), i64::MAX);
        assert_eq!(grace_cutoff(1000, 10), 990);
    }
}
