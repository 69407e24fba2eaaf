//! Usernames: what is accepted, and the normalized form that uniqueness and lookups use.

/// Longest username accepted, in characters.
pub const MAX_USERNAME_CHARS: usize = 255;

/// Why a username is refused (the admin CLI shows it).
pub fn validate(username: &str) -> Result<(), &'static str> {
    if username.trim().is_empty() {
        return Err("username must not be empty or whitespace");
    }
    if username.trim() != username {
        return Err("username must not start or end with whitespace");
    }
    if username.chars().count() > MAX_USERNAME_CHARS {
        return Err("username is longer than 255 characters");
    }
    if username.chars().any(char::is_control) {
        return Err("username must not contain control characters");
    }
    Ok(())
}

/// Case-insensitive form: "Alice" and "ALICE" are one account.
pub fn normalize(username: &str) -> String {
    username.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(validate("alice").is_ok());
        assert!(validate("O'Brien; DROP TABLE users;--").is_ok());
        assert!(validate("").is_err());
        assert!(validate("   ").is_err());
        assert!(validate(" alice").is_err());
        assert!(validate("al\u{0}ice").is_err());
        assert!(validate("al\nice").is_err());
        assert!(validate(&"x".repeat(256)).is_err());
        assert!(validate(&"é".repeat(255)).is_ok());
    }

    #[test]
    fn normalization_folds_case() {
        assert_eq!(normalize("ÁLice"), normalize("álice"));
    }
}
