//! The settings of a schedule, as a JSON object (a PHP array converts to one): `name` (a string, see
//! [`super::name`]), `timezone` (an IANA name) and `catchup` (whole seconds, 0 to [`MAX_CATCHUP_SECS`]). A
//! setting given as `null` takes its default; any other key is refused.

use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::error::{shown, Error, ErrorKind};
use super::name::check_name;
use super::zone::parse_zone;

/// A tick missed by at most this many seconds is fired late, once.
pub const DEFAULT_CATCHUP_SECS: u32 = 60;
/// One year of 365 days.
pub const MAX_CATCHUP_SECS: u32 = 365 * 24 * 3600;

pub const KEYS: [&str; 3] = ["name", "timezone", "catchup"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub name: Option<String>,
    pub timezone: Option<Tz>,
    pub catchup_secs: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { name: None, timezone: None, catchup_secs: DEFAULT_CATCHUP_SECS }
    }
}

impl Settings {
    pub fn from_json(settings: &Map<String, Value>) -> Result<Self, Error> {
        let mut out = Settings::default();
        for (key, value) in settings {
            if value.is_null() && KEYS.contains(&key.as_str()) {
                continue;
            }
            match key.as_str() {
                "name" => {
                    let name = value.as_str().ok_or_else(|| wrong_type("name", "a string", value))?;
                    check_name(name)?;
                    out.name = Some(name.to_string());
                }
                "timezone" => {
                    let zone = value.as_str().ok_or_else(|| wrong_type("timezone", "a string", value))?;
                    out.timezone = Some(parse_zone(zone)?);
                }
                "catchup" => {
                    let range = format!("a whole number of seconds from 0 to {MAX_CATCHUP_SECS}");
                    let secs = value.as_i64().ok_or_else(|| wrong_type("catchup", &range, value))?;
                    out.catchup_secs =
                        u32::try_from(secs).ok().filter(|s| *s <= MAX_CATCHUP_SECS).ok_or_else(|| {
                            Error::new(ErrorKind::Setting, format!("setting 'catchup' must be {range}, got {secs}"))
                        })?;
                }
                other => {
                    return Err(Error::new(
                        ErrorKind::Setting,
                        format!("unknown schedule setting '{}': the settings are {}", shown(other), KEYS.join(", ")),
                    ))
                }
            }
        }
        Ok(out)
    }
}

fn wrong_type(key: &str, want: &str, got: &Value) -> Error {
    let got = match got {
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("{n}"),
        Value::String(s) => format!("the string '{}'", shown(s)),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
        Value::Null => "null".to_string(),
    };
    Error::new(ErrorKind::Setting, format!("setting '{key}' must be {want}, got {got}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Settings, Error> {
        Settings::from_json(v.as_object().expect("an object"))
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(parse(json!({})).unwrap(), Settings::default());
        assert_eq!(parse(json!({})).unwrap().catchup_secs, 60);
        assert_eq!(parse(json!({"name": null, "timezone": null, "catchup": null})).unwrap(), Settings::default());
        let s = parse(json!({"name": "nightly", "timezone": "Europe/Berlin", "catchup": 0})).unwrap();
        assert_eq!(s, Settings { name: Some("nightly".into()), timezone: Some(Tz::Europe__Berlin), catchup_secs: 0 });
        assert_eq!(parse(json!({"catchup": MAX_CATCHUP_SECS})).unwrap().catchup_secs, MAX_CATCHUP_SECS);
    }

    #[test]
    fn refusals_name_the_setting_and_value() {
        let cases = [
            (
                json!({"nmae": "x"}),
                ErrorKind::Setting,
                "unknown schedule setting 'nmae': the settings are name, timezone, catchup",
            ),
            (
                json!({"catchup": -1}),
                ErrorKind::Setting,
                "setting 'catchup' must be a whole number of seconds from 0 to 31536000, got -1",
            ),
            (json!({"catchup": 31536001}), ErrorKind::Setting, "got 31536001"),
            (
                json!({"catchup": 1.5}),
                ErrorKind::Setting,
                "setting 'catchup' must be a whole number of seconds from 0 to 31536000, got 1.5",
            ),
            (json!({"catchup": "60"}), ErrorKind::Setting, "got the string '60'"),
            (json!({"catchup": true}), ErrorKind::Setting, "got true"),
            (json!({"name": 5}), ErrorKind::Setting, "setting 'name' must be a string, got 5"),
            (json!({"name": "a b"}), ErrorKind::Setting, "schedule name 'a b' is invalid"),
            (json!({"name": ""}), ErrorKind::Setting, "schedule name '' is invalid"),
            (json!({"timezone": ["UTC"]}), ErrorKind::Setting, "setting 'timezone' must be a string, got an array"),
            (json!({"timezone": "Berlin"}), ErrorKind::TimeZone, "time zone 'Berlin' is not an IANA time zone name"),
        ];
        for (input, kind, want) in cases {
            let e = parse(input.clone()).unwrap_err();
            assert_eq!(e.kind(), kind, "{input}");
            assert!(e.message().starts_with(want) || e.message().ends_with(want), "{input}: {e}");
        }
    }
}
