//! Kubernetes resource quantities (`870m`, `498Mi`, `123456n`, `1.5Gi`, `2e3`),
//! parsed exactly with integer arithmetic and rounded up to the unit asked for,
//! as the API server rounds.

/// CPU in millicores: `"500m"` → 500, `"2"` → 2000, `"123456n"` → 1.
pub fn cpu_millicores(text: &str) -> Result<u64, String> {
    to_unit(text, 1000).map_err(|why| format!("invalid CPU quantity {text:?}: {why}"))
}

/// Memory in bytes: `"2Gi"` → 2147483648, `"1.5G"` → 1500000000.
pub fn memory_bytes(text: &str) -> Result<u64, String> {
    to_unit(text, 1).map_err(|why| format!("invalid memory quantity {text:?}: {why}"))
}

/// Formats bytes the way people write limits: the largest binary suffix that
/// divides exactly, so the value round-trips.
pub fn format_memory(bytes: u64) -> String {
    for (suffix, size) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{suffix}", bytes / size);
        }
    }
    bytes.to_string()
}

/// Formats bytes for people, rounded to whole MiB (or exact GiB) — for reports
/// and prompts, not for values that must round-trip.
pub fn format_memory_rounded(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{}Gi", bytes >> 30)
    } else if bytes >= 1 << 20 {
        format!("{}Mi", (bytes + (1 << 19)) >> 20)
    } else {
        format_memory(bytes)
    }
}

pub fn format_cpu(millicores: u64) -> String {
    if millicores.is_multiple_of(1000) {
        (millicores / 1000).to_string()
    } else {
        format!("{millicores}m")
    }
}

fn to_unit(text: &str, per_unit: u128) -> Result<u64, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty");
    }
    if text.starts_with('-') {
        return Err("negative");
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err("no digits");
    }
    if fraction.contains('.') {
        return Err("more than one decimal point");
    }
    if whole.len() + fraction.len() > 30 {
        return Err("too many digits");
    }
    // At most 30 ASCII digits (checked above) always fit in a u128; no string
    // is built, as quantities are parsed for every pod on every evaluation.
    let mut numerator: u128 = whole
        .bytes()
        .chain(fraction.bytes())
        .fold(0, |n, digit| n * 10 + u128::from(digit - b'0'));
    let mut denominator: u128 = 10u128.pow(fraction.len() as u32);

    let (binary_power, decimal_power): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        _ => match suffix.strip_prefix(['e', 'E']) {
            Some(exponent) => {
                let exponent: i32 = exponent.parse().map_err(|_| "unknown suffix")?;
                if !(-30..=30).contains(&exponent) {
                    return Err("exponent out of range");
                }
                (0, exponent)
            }
            None => return Err("unknown suffix"),
        },
    };
    numerator = numerator
        .checked_mul(per_unit)
        .and_then(|n| n.checked_mul(1u128 << binary_power))
        .ok_or("too large")?;
    if decimal_power >= 0 {
        numerator = numerator
            .checked_mul(10u128.pow(decimal_power as u32))
            .ok_or("too large")?;
    } else {
        denominator = denominator
            .checked_mul(10u128.pow(decimal_power.unsigned_abs()))
            .ok_or("too small")?;
    }
    let value = numerator.div_ceil(denominator);
    u64::try_from(value).map_err(|_| "too large")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities() {
        assert_eq!(cpu_millicores("870m"), Ok(870));
        assert_eq!(cpu_millicores("2"), Ok(2000));
        assert_eq!(cpu_millicores("0.5"), Ok(500));
        assert_eq!(cpu_millicores("123456n"), Ok(1));
        assert_eq!(cpu_millicores("250000000n"), Ok(250));
        assert_eq!(cpu_millicores("1500u"), Ok(2));
        assert_eq!(cpu_millicores("0"), Ok(0));
    }

    #[test]
    fn memory_quantities() {
        assert_eq!(memory_bytes("498Mi"), Ok(498 * 1024 * 1024));
        assert_eq!(memory_bytes("1.5Gi"), Ok(1536 * 1024 * 1024));
        assert_eq!(memory_bytes("1.5G"), Ok(1_500_000_000));
        assert_eq!(memory_bytes("2e3"), Ok(2000));
        assert_eq!(memory_bytes("128974848"), Ok(128_974_848));
        assert_eq!(memory_bytes("100k"), Ok(100_000));
    }

    #[test]
    fn bad_quantities_are_errors_naming_the_input() {
        for bad in [
            "",
            "abc",
            "-1Gi",
            "1.2.3",
            "5Zi",
            "1e99",
            "99999999999999999999Ei",
            ".",
        ] {
            let error = memory_bytes(bad).unwrap_err();
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for bytes in [2u64 << 30, 512 << 20, 1536 << 20, 1000, 3 << 40] {
            assert_eq!(memory_bytes(&format_memory(bytes)), Ok(bytes));
        }
        assert_eq!(format_memory(2 << 30), "2Gi");
        assert_eq!(format_memory(1536 << 20), "1536Mi");
        assert_eq!(format_cpu(1500), "1500m");
        assert_eq!(format_memory_rounded(1500 * 1024 * 1024 + 12345), "1500Mi");
        assert_eq!(format_memory_rounded(4 << 30), "4Gi");
        assert_eq!(format_cpu(2000), "2");
    }
}
