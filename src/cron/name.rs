//! Schedule names: 1 to 128 characters of A-Z a-z 0-9 _ - . , starting with a letter, digit or underscore (so a
//! name never reads as a command-line option). A schedule declared without a name gets one derived from its
//! event and expression: the event's name made valid, a dash, and 12 hex digits of a UUIDv5 (SHA-1) of the
//! expression (as given, trimmed) and the event, the same in every process and every version.

use uuid::Uuid;

use super::error::{shown, Error, ErrorKind};

pub const MAX_NAME_LEN: usize = 128;

/// Namespace of default schedule names, fixed forever: changing it renames every unnamed schedule.
const NAME_NAMESPACE: Uuid = Uuid::from_u128(0x5c0d_c1a6_9e7f_4b0e_8d21_6b3f_0a57_e4c9);

pub fn check_name(name: &str) -> Result<(), Error> {
    let first_ok = name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    if name.len() > MAX_NAME_LEN || !first_ok || !name.bytes().all(valid_byte) {
        return Err(Error::new(
            ErrorKind::Setting,
            format!(
                "schedule name '{}' is invalid: use 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 _ - . \
                 starting with a letter, digit or _",
                shown(name)
            ),
        ));
    }
    Ok(())
}

/// The name of a schedule declared without one: `backup.nightly` and `0 3 * * *` give
/// `backup.nightly-` followed by 12 hex digits.
pub fn default_name(expression: &str, event: &str) -> String {
    let mut slug = String::new();
    for c in event.chars() {
        if slug.len() >= 64 {
            break;
        }
        let c = if c.is_ascii() && valid_byte(c as u8) { c } else { '_' };
        // One underscore for a run of replaced characters.
        if !(c == '_' && slug.ends_with('_')) {
            slug.push(c);
        }
    }
    if !slug.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        slug.insert_str(0, "cron");
    }
    // The expression's length first, so that no two (expression, event) pairs give the same key.
    let key = format!("{}:{expression}{event}", expression.len());
    let hash = Uuid::new_v5(&NAME_NAMESPACE, key.as_bytes()).simple().to_string();
    format!("{slug}-{}", &hash[..12])
}

fn valid_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_checked() {
        for ok in ["a", "backup", "Backup_2.daily-x", "_x", "9am", &"n".repeat(128)] {
            check_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "-x", ".x", "a b", "a/b", "é", "a\nb", &"n".repeat(129)] {
            let e = check_name(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Setting);
            assert!(e.message().starts_with("schedule name '"), "{e}");
        }
    }

    #[test]
    fn default_names_are_valid_stable_and_distinct() {
        // Pinned: a change here renames every stored schedule declared without a name.
        assert_eq!(default_name("0 3 * * *", "backup.nightly"), "backup.nightly-9efb7857b926");
        let cases = [
            ("* * * * *", "order paid"),
            ("* * * * *", "événement"),
            ("* * * * *", "-leading"),
            ("* * * * *", ""),
            ("* * * * *", "//"),
            ("* * * * *", &"x".repeat(255)),
        ];
        let mut seen = std::collections::HashSet::new();
        for (expr, event) in cases {
            let name = default_name(expr, event);
            check_name(&name).unwrap_or_else(|e| panic!("{event}: {e}"));
            assert!(seen.insert(name.clone()), "{name} repeats");
            assert_eq!(name, default_name(expr, event));
        }
        assert_eq!(default_name("* * * * *", "order paid").split('-').next(), Some("order_paid"));
        assert_ne!(default_name("* * * * *", "e"), default_name("*/1 * * * *", "e"));
        assert_ne!(default_name("a", "b\0c"), default_name("a\0b", "c"));
    }
}
