//! A schedule: publish `event` at every tick of `expression` in `zone`, catching up a tick missed by at most
//! `catchup_secs`.

use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::error::{shown, Error, ErrorKind};
use super::expression::Expression;
use super::name::default_name;
use super::settings::Settings;

#[derive(Clone, Debug)]
pub struct Schedule {
    name: String,
    event: String,
    expression: Expression,
    zone: Tz,
    catchup_secs: u32,
}

impl Schedule {
    /// Checks the expression, then the event, then the settings. `default_zone` is asked only when the
    /// settings name no zone (pass [`super::zone::process_zone`]).
    pub fn parse(
        expression: &str,
        event: &str,
        settings: &Map<String, Value>,
        default_zone: impl FnOnce() -> Result<Tz, Error>,
    ) -> Result<Self, Error> {
        let expression = Expression::parse(expression)?;
        if event.is_empty() || event.len() > 255 || event.chars().any(char::is_control) {
            return Err(Error::new(
                ErrorKind::Setting,
                format!("event name '{}' is invalid: use 1 to 255 printable characters", shown(event)),
            ));
        }
        let settings = Settings::from_json(settings)?;
        let zone = match settings.timezone {
            Some(zone) => zone,
            None => default_zone()?,
        };
        let name = settings.name.unwrap_or_else(|| default_name(expression.as_str(), event));
        Ok(Schedule { name, event: event.to_string(), expression, zone, catchup_secs: settings.catchup_secs })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn event(&self) -> &str {
        &self.event
    }
    pub fn expression(&self) -> &Expression {
        &self.expression
    }
    pub fn zone(&self) -> Tz {
        self.zone
    }
    pub fn catchup_secs(&self) -> u32 {
        self.catchup_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn utc() -> Result<Tz, Error> {
        Ok(Tz::UTC)
    }

    fn settings(v: Value) -> Map<String, Value> {
        v.as_object().expect("an object").clone()
    }

    #[test]
    fn defaults() {
        let s = Schedule::parse(" */5 * * * * ", "report", &Map::new(), utc).unwrap();
        assert_eq!(s.expression().as_str(), "*/5 * * * *");
        assert_eq!(s.event(), "report");
        assert_eq!(s.zone(), Tz::UTC);
        assert_eq!(s.catchup_secs(), 60);
        assert_eq!(s.name(), default_name("*/5 * * * *", "report"));
    }

    #[test]
    fn settings_override_defaults_and_the_default_zone_is_asked_only_when_needed() {
        let given = settings(json!({"name": "mail", "timezone": "Asia/Tokyo", "catchup": 600}));
        let s = Schedule::parse("@daily", "mail.send", &given, || panic!("not asked")).unwrap();
        assert_eq!((s.name(), s.zone(), s.catchup_secs()), ("mail", Tz::Asia__Tokyo, 600));
        let s = Schedule::parse("@daily", "mail.send", &Map::new(), || Ok(Tz::Europe__Berlin)).unwrap();
        assert_eq!(s.zone(), Tz::Europe__Berlin);
    }

    #[test]
    fn the_first_problem_is_reported() {
        let bad_zone = || Err(Error::new(ErrorKind::TimeZone, "no zone"));
        let cases = [
            ("* * *", "e", json!({}), ErrorKind::Expression),
            ("* * * * *", "", json!({}), ErrorKind::Setting),
            ("* * * * *", "a\u{1}b", json!({}), ErrorKind::Setting),
            ("* * * * *", "e", json!({"zone": "UTC"}), ErrorKind::Setting),
            ("* * * * *", "e", json!({}), ErrorKind::TimeZone),
        ];
        for (expr, event, given, kind) in cases {
            let e = Schedule::parse(expr, event, &settings(given.clone()), bad_zone).unwrap_err();
            assert_eq!(e.kind(), kind, "{expr} {event} {given}: {e}");
        }
        let e = Schedule::parse("* * * * *", "", &Map::new(), utc).unwrap_err();
        assert_eq!(e.message(), "event name '' is invalid: use 1 to 255 printable characters");
    }
}
