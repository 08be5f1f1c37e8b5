//! The user's units (`"20Mbps"`, `"0.5%"`) in the config's integers. Admission already checked
//! the shapes; these still return `None` rather than trust that.

/// `"500kbps"`, `"20Mbps"`, `"1Gbps"`, `"64bps"` → bits per second.
pub fn parse_bits_per_second(s: &str) -> Option<u64> {
    let number = s.strip_suffix("bps")?;
    let (digits, scale) = match number.as_bytes().last()? {
        b'k' => (&number[..number.len() - 1], 1_000),
        b'M' => (&number[..number.len() - 1], 1_000_000),
        b'G' => (&number[..number.len() - 1], 1_000_000_000),
        _ => (number, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// `"1%"`, `"0.5%"`, `"0.125%"` → parts per million (10000, 5000, 1250).
pub fn parse_loss_ppm(s: &str) -> Option<u32> {
    let number = s.strip_suffix('%')?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty()
        || fraction.len() > 3
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u32 = whole.parse().ok()?;
    // Three decimals of a percent are tens of ppm: "0.125" -> 125 * 10.
    let padded = format!("{fraction:0<3}");
    let fraction: u32 = padded.parse().ok()?;
    let ppm = whole.checked_mul(10_000)?.checked_add(fraction * 10)?;
    (ppm <= 1_000_000).then_some(ppm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidths() {
        assert_eq!(parse_bits_per_second("20Mbps"), Some(20_000_000));
        assert_eq!(parse_bits_per_second("500kbps"), Some(500_000));
        assert_eq!(parse_bits_per_second("10Gbps"), Some(10_000_000_000));
        assert_eq!(parse_bits_per_second("64bps"), Some(64));
        for bad in ["", "bps", "Mbps", "20 Mbps", "20mbps", "-1Mbps", "20Mb"] {
            assert_eq!(parse_bits_per_second(bad), None, "{bad}");
        }
    }

    #[test]
    fn losses() {
        assert_eq!(parse_loss_ppm("1%"), Some(10_000));
        assert_eq!(parse_loss_ppm("0.5%"), Some(5_000));
        assert_eq!(parse_loss_ppm("0.125%"), Some(1_250));
        assert_eq!(parse_loss_ppm("100%"), Some(1_000_000));
        for bad in ["", "%", "1", "1.2345%", "101%", ".5%", "a%"] {
            assert_eq!(parse_loss_ppm(bad), None, "{bad}");
        }
    }
}
