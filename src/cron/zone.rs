//! Time zones by IANA name, and the process's own zone: the `TZ` environment variable if set, else the
//! target of the `/etc/localtime` link, else UTC.

use std::str::FromStr;

use chrono_tz::{Tz, TZ_VARIANTS};

use super::error::{shown, Error, ErrorKind};

/// A zone by its IANA name (`Europe/Berlin`, `America/New_York`, `UTC`); names are case-sensitive, and a
/// refusal names the zone meant when only the case differs.
pub fn parse_zone(name: &str) -> Result<Tz, Error> {
    if let Ok(tz) = Tz::from_str(name) {
        return Ok(tz);
    }
    let hint = match TZ_VARIANTS.iter().find(|tz| tz.name().eq_ignore_ascii_case(name)) {
        Some(tz) => format!(" (did you mean '{}'?)", tz.name()),
        None => " (like 'Europe/Berlin', 'America/New_York' or 'UTC')".to_string(),
    };
    Err(Error::new(ErrorKind::TimeZone, format!("time zone '{}' is not an IANA time zone name{hint}", shown(name))))
}

/// The process's zone from what [`process_zone`] reads: the value of `TZ` if it is set, and the target of
/// `/etc/localtime` if that is a link.
///
/// - `TZ` set and empty means UTC, as the C library reads it.
/// - `TZ` set to a name, or to `:name`, or to a path into a zoneinfo directory: that zone; a value that names no
///   zone (a POSIX rule such as `CET-1CEST`) is an error rather than a silent guess, since a wrong zone fires
///   every schedule at the wrong hour.
/// - `TZ` unset: the zone the link points to (`/usr/share/zoneinfo/Europe/Berlin`); UTC when there is no link or
///   it points outside a zoneinfo directory.
pub fn process_zone_from(tz_env: Option<&str>, localtime_link: Option<&str>) -> Result<Tz, Error> {
    match tz_env {
        Some("") => Ok(Tz::UTC),
        Some(value) => {
            let name = value.strip_prefix(':').unwrap_or(value);
            let name = if name.starts_with('/') { zoneinfo_name(name).unwrap_or(name) } else { name };
            Tz::from_str(name).map_err(|_| {
                Error::new(
                    ErrorKind::TimeZone,
                    format!(
                        "the process's time zone TZ='{}' is not an IANA time zone name: set TZ to one \
                         (like 'Europe/Berlin') or give the schedule a 'timezone' setting",
                        shown(value)
                    ),
                )
            })
        }
        None => Ok(localtime_link.and_then(zoneinfo_name).and_then(|n| Tz::from_str(n).ok()).unwrap_or(Tz::UTC)),
    }
}

/// Reads `TZ` and the `/etc/localtime` link, and hands them to [`process_zone_from`].
pub fn process_zone() -> Result<Tz, Error> {
    let tz_env = std::env::var_os("TZ").map(|v| v.to_string_lossy().into_owned());
    let link = std::fs::read_link("/etc/localtime").ok().map(|p| p.to_string_lossy().into_owned());
    process_zone_from(tz_env.as_deref(), link.as_deref())
}

/// `Europe/Berlin` from `/usr/share/zoneinfo/Europe/Berlin`, `../usr/share/zoneinfo/posix/Europe/Berlin` or
/// `/var/db/timezone/zoneinfo/Europe/Berlin`.
fn zoneinfo_name(path: &str) -> Option<&str> {
    let (_, name) = path.rsplit_once("zoneinfo/")?;
    let name = name.strip_prefix("posix/").or_else(|| name.strip_prefix("right/")).unwrap_or(name);
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_zone("Europe/Berlin").unwrap(), Tz::Europe__Berlin);
        assert_eq!(parse_zone("UTC").unwrap(), Tz::UTC);
        assert_eq!(parse_zone("Australia/Lord_Howe").unwrap(), Tz::Australia__Lord_Howe);
        let cases = [
            (
                "europe/berlin",
                "time zone 'europe/berlin' is not an IANA time zone name (did you mean 'Europe/Berlin'?)",
            ),
            ("Mars/Olympus", "time zone 'Mars/Olympus' is not an IANA time zone name (like 'Europe/Berlin'"),
            ("", "time zone '' is not an IANA time zone name"),
            ("Europe/Berlin\n", "time zone 'Europe/Berlin\\n' is not"),
        ];
        for (name, want) in cases {
            let e = parse_zone(name).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimeZone);
            assert!(e.message().starts_with(want), "{name}: {e}");
        }
    }

    #[test]
    fn process_zone_lookup() {
        let berlin = "/usr/share/zoneinfo/Europe/Berlin";
        let cases: &[(Option<&str>, Option<&str>, Tz)] = &[
            (Some("America/New_York"), Some(berlin), Tz::America__New_York),
            (Some(":America/New_York"), None, Tz::America__New_York),
            (Some("/usr/share/zoneinfo/Asia/Tokyo"), None, Tz::Asia__Tokyo),
            (Some(":/usr/share/zoneinfo/Asia/Tokyo"), None, Tz::Asia__Tokyo),
            (Some("UTC"), Some(berlin), Tz::UTC),
            (Some(""), Some(berlin), Tz::UTC),
            (None, Some(berlin), Tz::Europe__Berlin),
            (None, Some("../usr/share/zoneinfo/posix/Europe/Berlin"), Tz::Europe__Berlin),
            (None, Some("/var/db/timezone/zoneinfo/America/New_York"), Tz::America__New_York),
            (None, Some("/usr/share/zoneinfo/Etc/UTC"), Tz::Etc__UTC),
            (None, Some("/somewhere/else"), Tz::UTC),
            (None, Some("/usr/share/zoneinfo/"), Tz::UTC),
            (None, Some("/usr/share/zoneinfo/Not/AZone"), Tz::UTC),
            (None, None, Tz::UTC),
        ];
        for (tz, link, want) in cases {
            assert_eq!(process_zone_from(*tz, *link).unwrap(), *want, "TZ={tz:?} link={link:?}");
        }
        for tz in ["CET-1CEST", "Nowhere/Land", "/etc/somefile"] {
            let e = process_zone_from(Some(tz), Some(berlin)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimeZone);
            assert!(e.message().contains(&format!("TZ='{tz}'")), "{e}");
        }
    }

    #[test]
    fn the_reader_agrees_with_the_pure_lookup() {
        let tz_env = std::env::var("TZ").ok();
        let link = std::fs::read_link("/etc/localtime").ok().map(|p| p.to_string_lossy().into_owned());
        assert_eq!(process_zone(), process_zone_from(tz_env.as_deref(), link.as_deref()));
    }
}
