//! `hermet bench abuse`: what a hostile client can learn or cost. Sign-in timings for an
//! unknown account, a known account with a wrong password and the right one (interleaved,
//! so load drifts hit all three alike: an account oracle shows as a gap between the first
//! two), then a flood of requests with made-up methods and paths, after which the
//! `http_requests_total` series are counted (unbounded labels show as a series per
//! request). Run the server with rate limits off, or the limits answer instead.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;
use serde_json::json;

use crate::{Client, Stats};

#[derive(Debug, Serialize)]
pub struct AbuseReport {
    pub sign_in_unknown_account: Stats,
    pub sign_in_wrong_password: Stats,
    pub sign_in_right_password: Stats,
    pub flood_requests: usize,
    pub series_before: usize,
    pub series_after: usize,
    pub metrics_bytes_after: usize,
}

/// `samples` sign-ins of each kind, then `flood` made-up requests.
pub async fn abuse(client: &Client, samples: usize, flood: usize) -> anyhow::Result<AbuseReport> {
    let account = format!("abuse-{}@bench.hermet", client.tag);
    let password = "bench-abuse-password";
    let body = json!({"account": account, "accountType": "email", "credential": password, "nickname": "abuse"});
    let r = client.http.post(format!("{}/api/v1/auth/sign-up", client.base)).json(&body).send().await?;
    if !r.status().is_success() {
        bail!("sign-up refused: {} {}", r.status(), r.text().await.unwrap_or_default());
    }
    let sign_in = |account: String, credential: &'static str, expect: u16| async move {
        let body = json!({"account": account, "accountType": "email", "credential": credential});
        let t = Instant::now();
        let r = client.http.post(format!("{}/api/v1/auth/sign-in", client.base)).json(&body).send().await?;
        let took = t.elapsed();
        if r.status().as_u16() != expect {
            bail!("sign-in answered {} (expected {expect}): is the server running with rate limits off?", r.status());
        }
        anyhow::Ok(took)
    };
    let (mut unknown, mut wrong, mut right) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..samples {
        unknown.push(sign_in(format!("nobody-{i}-{}@bench.hermet", client.tag), "bench-abuse-wrong", 401).await?);
        wrong.push(sign_in(account.clone(), "bench-abuse-wrong", 401).await?);
        right.push(sign_in(account.clone(), password, 200).await?);
    }

    let series_before = request_series(client).await?.0;
    for i in 0..flood {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes())?;
        let r = client.http.request(method, format!("{}/nowhere/{i}", client.base)).send().await?;
        let _ = r.bytes().await;
    }
    let (series_after, metrics_bytes_after) = request_series(client).await?;
    Ok(AbuseReport {
        sign_in_unknown_account: Stats::of(&unknown),
        sign_in_wrong_password: Stats::of(&wrong),
        sign_in_right_password: Stats::of(&right),
        flood_requests: flood,
        series_before,
        series_after,
        metrics_bytes_after,
    })
}

/// The number of `http_requests_total` series on `/metrics`, and the page's size.
async fn request_series(client: &Client) -> anyhow::Result<(usize, usize)> {
    let text = client
        .http
        .get(format!("{}/metrics", client.base))
        .timeout(Duration::from_secs(30))
        .send()
        .await?
        .text()
        .await?;
    Ok((text.lines().filter(|l| l.starts_with("http_requests_total{")).count(), text.len()))
}
