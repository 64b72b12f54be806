//! Kubernetes resource quantities, as OSCAR's `memory` and `cpu` fields use them.

/// Splits `1.5Gi` into its number and suffix; `None` when the number part is not a decimal.
fn split(q: &str) -> Option<(f64, &str)> {
    let q = q.trim();
    let end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(end);
    if num.is_empty() || num.matches('.').count() > 1 || num[1..].contains('+') || num == "." {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    n.is_finite().then_some((n, suffix))
}

/// `256Mi`, `2Gi`, `1G`, `1e9`, `4096` (bytes) -> bytes. `None` for anything Kubernetes would
/// refuse, or for a negative or absurd (> 1 EiB) amount.
pub fn parse_memory_bytes(q: &str) -> Option<u64> {
    let (n, suffix) = split(q)?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "m" => 1e-3,
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    let bytes = (n * mult).ceil();
    (bytes <= 1024f64.powi(6)).then_some(bytes as u64)
}

/// `1.0`, `0.5`, `500m`, `2` -> millicores.
pub fn parse_cpu_millis(q: &str) -> Option<u64> {
    let (n, suffix) = split(q)?;
    let millis = match suffix {
        "" => n * 1000.0,
        "m" => n,
        _ => return None,
    };
    // Kubernetes rounds below 1m up to 1m; more than a million cores is a typo.
    (millis <= 1e9).then_some(millis.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory() {
        assert_eq!(parse_memory_bytes("256Mi"), Some(256 << 20));
        assert_eq!(parse_memory_bytes("2Gi"), Some(2 << 30));
        assert_eq!(parse_memory_bytes("1G"), Some(1_000_000_000));
        assert_eq!(parse_memory_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_memory_bytes("4096"), Some(4096));
        assert_eq!(parse_memory_bytes("1e3"), Some(1000));
        for bad in ["", "Gi", "2GB", "-1Gi", "two", "1..5Gi", "2 Gi x", "1Zi", "."] {
            assert_eq!(parse_memory_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn cpu() {
        assert_eq!(parse_cpu_millis("1.0"), Some(1000));
        assert_eq!(parse_cpu_millis("0.2"), Some(200));
        assert_eq!(parse_cpu_millis("500m"), Some(500));
        assert_eq!(parse_cpu_millis("2"), Some(2000));
        for bad in ["", "one", "1Gi", "1.0.0", "-1", "1 core"] {
            assert_eq!(parse_cpu_millis(bad), None, "{bad}");
        }
    }
}
