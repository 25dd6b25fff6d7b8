//! User-chosen names (channels, programs, assets, locators, manifests):
//! the one rule every API field, URL segment and storage key checks.

/// Whether `name` is a valid user-chosen name (`[a-z0-9][a-z0-9-]{0,62}`).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("ch1"));
        assert!(valid_name("0-a"));
        assert!(!valid_name(""));
        assert!(!valid_name("-a"));
        assert!(!valid_name("A"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(".."));
        assert!(!valid_name(&"a".repeat(64)));
    }
}
