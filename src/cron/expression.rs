//! A cron expression, parsed by croner: 5 fields (minute hour day-of-month month day-of-week), or 6 with a
//! leading seconds field, or one of the names @yearly, @annually, @monthly, @weekly, @daily, @midnight,
//! @hourly. Day-of-month takes `L` (last day), `W` (nearest weekday, `15W`) and `?`; day-of-week takes names
//! (SUN-SAT, 0-7 with 0 and 7 both Sunday), `#` (`FRI#2`, `5#L`), `L` (`5L`, last Friday), `?`, and a `+`
//! prefix that makes day-of-month AND day-of-week both required (by default either one matching is enough).
//! Month and weekday names are accepted in any case, but only in their own field.

use std::str::FromStr;

use chrono::{TimeZone, Utc};
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use croner::{Cron, JobType};

use super::error::{shown, Error, ErrorKind};

/// The names accepted in place of fields, and what each stands for.
pub const NICKNAMES: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// The six fields in their 6-field order: name, what it accepts.
const FIELDS: [(&str, &str); 6] = [
    ("seconds", "0-59 and * , - /"),
    ("minute", "0-59 and * , - /"),
    ("hour", "0-23 and * , - /"),
    ("day-of-month", "1-31 and * , - / ? L W"),
    ("month", "1-12, JAN-DEC and * , - /"),
    ("day-of-week", "0-7 (0 and 7 are Sunday), SUN-SAT and * , - / ? L # and a leading +"),
];
const MONTH_NAMES: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

#[derive(Clone, Debug)]
pub struct Expression {
    text: String,
    cron: Cron,
}

/// A nickname (`@daily`) as its fields; any other text as it is.
fn expand(trimmed: &str) -> Result<String, String> {
    if !trimmed.starts_with('@') {
        return Ok(trimmed.to_string());
    }
    match NICKNAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(trimmed)) {
        Some((_, fields)) => Ok((*fields).to_string()),
        None => {
            Err("is not a known name: use one of @yearly @annually @monthly @weekly @daily @midnight @hourly".into())
        }
    }
}

/// Which of `fields` (the first at position `first` of the six) the parser refuses, found by parsing
/// each alone among wildcards, and why.
fn refused_field(fields: &[&str], first: usize) -> Option<String> {
    fields.iter().enumerate().find_map(|(i, field)| {
        let mut probe = ["0", "*", "*", "*", "*", "*"];
        probe[first + i] = field;
        let fe = parser().parse(&probe.join(" ")).err()?;
        let (name, accepts) = FIELDS[first + i];
        Some(format!("has an invalid {name} field '{}' ({}); it accepts {accepts}", shown(field), reason(&fe)))
    })
}

impl Expression {
    /// Parses `text`; every refusal says which field holds which bad value.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad =
            |why: String| Err(Error::new(ErrorKind::Expression, format!("cron expression '{}' {why}", shown(text))));
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(Error::new(
                ErrorKind::Expression,
                "cron expression is empty: use 5 fields (minute hour day-of-month month day-of-week), \
                 6 with a leading seconds field, or one of @yearly @annually @monthly @weekly @daily @midnight @hourly",
            ));
        }
        let pattern = match expand(trimmed) {
            Ok(p) => p,
            Err(why) => return bad(why),
        };
        let fields: Vec<&str> = pattern.split_whitespace().collect();
        if fields.len() != 5 && fields.len() != 6 {
            return bad(format!(
                "has {} fields: use 5 (minute hour day-of-month month day-of-week) or 6 with a leading seconds field",
                fields.len()
            ));
        }
        // Position of each given field among the six.
        let first = 6 - fields.len();
        for (i, field) in fields.iter().enumerate() {
            if let Some(why) = misplaced_name(first + i, field) {
                return bad(format!("has {} field '{}': {why}", FIELDS[first + i].0, shown(field)));
            }
        }
        let cron = match parser().parse(&pattern) {
            Ok(cron) => cron,
            Err(e) => {
                return bad(refused_field(&fields, first).unwrap_or_else(|| format!("is invalid: {}", reason(&e))))
            }
        };
        // Refuse what never matches (30 February): every valid pattern repeats within the
        // 400-year Gregorian cycle, and croner searches up to the year 5000.
        let from = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single().expect("a valid fixed date");
        if cron.find_next_occurrence(&from, true).is_err() {
            return bad("never fires: no date matches its day-of-month, month and day-of-week fields together".into());
        }
        Ok(Expression { text: trimmed.to_string(), cron })
    }

    /// The expression as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Fixed-time jobs (single values in seconds, minute and hour) and interval jobs (a wildcard, range, list or
    /// step in any of them) differ at daylight-saving changes; see [`super::dst`].
    pub fn is_fixed_time(&self) -> bool {
        self.cron.determine_job_type() == JobType::FixedTime
    }

    pub(crate) fn cron(&self) -> &Cron {
        &self.cron
    }
}

impl FromStr for Expression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Expression::parse(s)
    }
}

/// croner's reason, without its prefixes.
fn reason(e: &CronError) -> String {
    match e {
        CronError::ComponentError(why) | CronError::InvalidPattern(why) => why.trim_end_matches('.').to_string(),
        CronError::IllegalCharacters(_) => "a character the field does not accept".to_string(),
        other => other.to_string(),
    }
}

fn parser() -> CronParser {
    CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build()
}

/// croner replaces month and day names anywhere in the pattern, so `JAN` in the day-of-week field would mean
/// Monday: refuse names outside their own field.
fn misplaced_name(position: usize, field: &str) -> Option<&'static str> {
    let upper = field.to_ascii_uppercase();
    let months = MONTH_NAMES.iter().any(|m| upper.contains(m));
    let days = DAY_NAMES.iter().any(|d| upper.contains(d));
    match position {
        4 if days => Some("day names belong in the day-of-week field"),
        5 if months => Some("month names belong in the month field"),
        4 | 5 => None,
        _ if months => Some("month names belong in the month field"),
        _ if days => Some("day names belong in the day-of-week field"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        let e = Expression::parse(text).expect_err(text);
        assert_eq!(e.kind(), ErrorKind::Expression, "{text}");
        e.message().to_string()
    }

    #[test]
    fn accepts_the_documented_forms() {
        for text in [
            "* * * * *",
            "*/5 * * * *",
            "0 9-17 * * MON-FRI",
            "0 0 1,15 * *",
            "30 * * * * *",
            "*/10 * * * * *",
            "0 0 L * *",
            "0 0 15W * *",
            "0 0 * * FRI#2",
            "0 0 * * 5#L",
            "0 0 * * 5L",
            "0 0 13 * +FRI",
            "0 0 ? * mon",
            "0 0 1 jan *",
            "0 0 29 2 *",
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@MIDNIGHT",
            "@hourly",
            "  0 0 * * 7  ",
        ] {
            let e = Expression::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(e.as_str(), text.trim());
        }
    }

    #[test]
    fn refusals_say_which_field_and_value() {
        let cases: &[(&str, &str)] = &[
            ("", "cron expression is empty"),
            ("   ", "cron expression is empty"),
            ("@often", "'@often' is not a known name"),
            ("@hourly 5", "is not a known name"),
            ("* * * *", "has 4 fields"),
            ("0 0 0 * * * *", "has 7 fields"),
            ("61 * * * *", "has an invalid minute field '61' (Number out of bounds); it accepts 0-59 and * , - /"),
            ("* 24 * * *", "invalid hour field '24'"),
            ("* * 32 * *", "invalid day-of-month field '32'"),
            ("* * 0 * *", "invalid day-of-month field '0'"),
            ("* * * 13 *", "invalid month field '13'"),
            ("* * * * 8", "invalid day-of-week field '8'"),
            ("60 * * * * *", "invalid seconds field '60'"),
            ("*/0 * * * *", "invalid minute field '*/0'"),
            ("a * * * *", "invalid minute field 'a' (a character the field does not accept)"),
            ("* * * * MON#6", "invalid day-of-week field 'MON#6'"),
            ("* * 5L * *", "invalid day-of-month field '5L'"),
            ("* * * * 1W", "invalid day-of-week field '1W'"),
            ("0 0 * * JAN", "day-of-week field 'JAN': month names belong in the month field"),
            ("0 0 * MON *", "month field 'MON': day names belong in the day-of-week field"),
            ("SUN 0 * * *", "minute field 'SUN': day names belong"),
            ("0 0 30 2 *", "never fires"),
            ("0 0 31 4,6,9,11 *", "never fires"),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(got.contains(want), "'{text}': '{got}' does not contain '{want}'");
        }
    }

    #[test]
    fn job_type_follows_the_time_fields() {
        assert!(Expression::parse("30 2 * * *").unwrap().is_fixed_time());
        assert!(Expression::parse("@daily").unwrap().is_fixed_time());
        assert!(Expression::parse("0 30 2 * * *").unwrap().is_fixed_time());
        assert!(!Expression::parse("* 2 * * *").unwrap().is_fixed_time());
        assert!(!Expression::parse("*/15 * * * *").unwrap().is_fixed_time());
        assert!(!Expression::parse("0 1,2 * * *").unwrap().is_fixed_time());
        assert!(!Expression::parse("@hourly").unwrap().is_fixed_time());
    }
}
