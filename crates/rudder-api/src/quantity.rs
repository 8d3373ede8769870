//! Resource quantities (`500m`, `64Mi`, `1.5`, `2e3`): parsing to a number of milli-units,
//! with upstream's syntax rules and error wording.

/// Upstream's message for a malformed quantity.
pub const FORMAT_MESSAGE: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{FORMAT_MESSAGE}")]
pub struct QuantityError;

/// Parses a quantity into thousandths of the base unit (so `100m` CPU is 100 and `1Ki` is
/// 1,024,000), saturating at i128 bounds. Rejects what upstream rejects.
pub fn parse_milli(text: &str) -> Result<i128, QuantityError> {
    let s = text.trim();
    if s.is_empty() || s != text {
        return Err(QuantityError);
    }
    let (sign, rest) = match s.as_bytes()[0] {
        b'+' => (1i128, &s[1..]),
        b'-' => (-1i128, &s[1..]),
        _ => (1i128, s),
    };
    let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(QuantityError);
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int_part}{frac_part}");
    let mantissa: i128 =
        if digits.is_empty() { 0 } else { digits.parse().map_err(|_| QuantityError)? };
    // value = mantissa * 10^(-frac_len) * multiplier
    let frac_len = frac_part.len() as i32;
    let (binary, decimal_exp): (u32, i32) = match suffix {
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
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().map_err(|_| QuantityError)?;
            (0, exp)
        }
        _ => return Err(QuantityError),
    };
    // Thousandths: add 3 to the decimal exponent.
    let exp = decimal_exp - frac_len + 3;
    let mut value = mantissa.checked_mul(1i128 << binary).unwrap_or(i128::MAX);
    if exp >= 0 {
        value = value
            .checked_mul(10i128.checked_pow(exp as u32).unwrap_or(i128::MAX))
            .unwrap_or(i128::MAX);
    } else {
        let div = 10i128.checked_pow((-exp) as u32).unwrap_or(i128::MAX);
        // Upstream rounds sub-milli amounts up (0.1m becomes 1m).
        value = (value + div - 1) / div;
    }
    Ok(sign * value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_forms() {
        assert_eq!(parse_milli("100m"), Ok(100));
        assert_eq!(parse_milli("1"), Ok(1000));
        assert_eq!(parse_milli("1.5"), Ok(1500));
        assert_eq!(parse_milli("1Ki"), Ok(1_024_000));
        assert_eq!(parse_milli("64Mi"), Ok(64 * 1024 * 1024 * 1000));
        assert_eq!(parse_milli("2k"), Ok(2_000_000));
        assert_eq!(parse_milli("1e3"), Ok(1_000_000));
        assert_eq!(parse_milli("0.1m"), Ok(1));
        assert_eq!(parse_milli("-1"), Ok(-1000));
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", "1Gx", "abc", "1..2", ".", "1 Gi", " 1", "Mi", "1KiB"] {
            assert_eq!(parse_milli(bad), Err(QuantityError), "{bad:?}");
        }
    }
}
