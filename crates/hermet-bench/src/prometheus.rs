//! Reading the server's Prometheus exposition: a histogram's buckets per label value,
//! and a quantile of the observations between two scrapes.

use std::collections::BTreeMap;

/// One histogram's cumulative buckets (`le` → count), per value of `label`, from a
/// Prometheus text exposition.
pub fn histogram_buckets(exposition: &str, metric: &str, label: &str) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    let prefix = format!("{metric}_bucket{{");
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else { continue };
        let Some((labels, value)) = rest.rsplit_once("} ") else { continue };
        let mut key = String::new();
        let mut le = None;
        for kv in labels.split("\",") {
            let Some((k, v)) = kv.split_once("=\"") else { continue };
            let v = v.trim_end_matches('"');
            if k == label {
                key = v.to_owned();
            } else if k == "le" {
                le = Some(if v == "+Inf" { f64::INFINITY } else { v.parse().unwrap_or(f64::NAN) });
            }
        }
        if let (Some(le), Ok(count)) = (le, value.trim().parse::<f64>()) {
            out.entry(key).or_default().push((le, count));
        }
    }
    for v in out.values_mut() {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// The `q` quantile of the observations between two scrapes of one histogram, by linear
/// interpolation inside the bucket (what PromQL's `histogram_quantile` does).
pub fn quantile_between(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before.iter().find(|(l, _)| l == le).map(|(_, c)| *c).unwrap_or(0.0);
            (*le, n - was)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, cum) in &delta {
        if cum >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let in_bucket = cum - prev.1;
            let frac = if in_bucket > 0.0 { (rank - prev.1) / in_bucket } else { 1.0 };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (le, cum);
    }
    Some(prev.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_interpolate_between_scrapes() {
        let text = |n: [u32; 3]| {
            format!(
                "# TYPE sync_lag_seconds histogram\n\
                 sync_lag_seconds_bucket{{consumer=\"a\",le=\"0.001\"}} {}\n\
                 sync_lag_seconds_bucket{{consumer=\"a\",le=\"0.002\"}} {}\n\
                 sync_lag_seconds_bucket{{consumer=\"a\",le=\"+Inf\"}} {}\n\
                 sync_lag_seconds_count{{consumer=\"a\"}} {}\n",
                n[0], n[1], n[2], n[2]
            )
        };
        let before = histogram_buckets(&text([10, 10, 10]), "sync_lag_seconds", "consumer");
        let after = histogram_buckets(&text([10, 110, 110]), "sync_lag_seconds", "consumer");
        assert_eq!(after["a"].len(), 3);
        // the 100 new observations all fall in (1 ms, 2 ms]
        let p50 = quantile_between(&before["a"], &after["a"], 0.5).unwrap();
        assert!((p50 - 0.0015).abs() < 1e-9, "{p50}");
        assert!(quantile_between(&before["a"], &before["a"], 0.5).is_none(), "no new observations");
    }
}
