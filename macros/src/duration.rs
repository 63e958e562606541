//! `timeout = "5s"`: a whole number and a unit, `ms`, `s` or `m`.

/// `"500ms"`, `"5s"` or `"2m"` in milliseconds; the error is the message for the user.
pub(crate) fn parse_ms(text: &str) -> Result<u64, String> {
    const USAGE: &str = "expected a whole number followed by `ms`, `s` or `m`, \
                         e.g. \"500ms\", \"5s\", \"2m\"";
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let per_unit: u64 = match unit {
        _ if digits.is_empty() => return Err(format!("invalid timeout \"{text}\": {USAGE}")),
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "" => return Err(format!("timeout \"{text}\" has no unit: {USAGE}")),
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in timeout \"{text}\": {USAGE}"
            ))
        }
    };
    match digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(per_unit))
    {
        Some(0) => Err("timeout must be greater than zero".to_owned()),
        Some(ms) => Ok(ms),
        None => Err(format!("timeout \"{text}\" is too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ms;

    #[test]
    fn durations() {
        assert_eq!(parse_ms("500ms"), Ok(500));
        assert_eq!(parse_ms("5s"), Ok(5_000));
        assert_eq!(parse_ms("2m"), Ok(120_000));
        assert_eq!(parse_ms("007s"), Ok(7_000));
    }

    #[test]
    fn bad_durations() {
        let bad = |text| parse_ms(text).unwrap_err();
        assert_eq!(bad("0s"), "timeout must be greater than zero");
        assert_eq!(bad("0ms"), "timeout must be greater than zero");
        assert!(bad("").starts_with("invalid timeout \"\": expected a whole number"));
        assert!(bad("ms").starts_with("invalid timeout \"ms\""));
        assert!(bad("-5s").starts_with("invalid timeout \"-5s\""));
        assert!(bad("1.5s").starts_with("unknown unit `.5s`"));
        assert!(bad("5 s").starts_with("unknown unit ` s`"));
        assert!(bad("5S").starts_with("unknown unit `S`"));
        assert!(bad("500").starts_with("timeout \"500\" has no unit"));
        assert_eq!(
            bad("18446744073709551615m"),
            "timeout \"18446744073709551615m\" is too large"
        );
        assert_eq!(
            bad("99999999999999999999ms"),
            "timeout \"99999999999999999999ms\" is too large"
        );
    }
}
