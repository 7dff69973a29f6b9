//! The consistency checker and the rebuild (`003_0aed9671e6f5a289.txt` "故障恢复"). Both
//! recompute every read-model row from the write side with the same SQL the projections
//! use (`hermet_store::views`), owner by owner in batches.

use std::collections::{BTreeMap, BTreeSet};

use hermet_domain::Result;
use hermet_domain::id::UserId;
use hermet_domain::projection::Refresh;
use hermet_domain::time::now_ms;
use hermet_store::{Database, ProjectionWrites, Transaction};

use crate::App;

/// Owners per batch: large enough for set-based statements, small enough to keep each
/// transaction short.
pub const BATCH: u32 = 500;

/// One inconsistent read-model row.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// `conversation`, `contact`, `conversation_reverse_index` or `contact_reverse_index`.
    pub model: &'static str,
    /// The row's key, e.g. `user 1 / channel 2`.
    pub key: String,
    /// `missing`, `extra` or `mismatch`.
    pub kind: &'static str,
    /// For a mismatch: the fields that differ, with expected and stored values.
    pub fields: Vec<(String, String, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct ConsistencyReport {
    pub owners: u64,
    /// Rows expected or stored (their union).
    pub rows: u64,
    pub findings: Vec<Finding>,
    pub repaired: u64,
}

impl ConsistencyReport {
    pub fn missing(&self) -> usize {
        self.findings.iter().filter(|f| f.kind == "missing").count()
    }
    pub fn extra(&self) -> usize {
        self.findings.iter().filter(|f| f.kind == "extra").count()
    }
    pub fn mismatched(&self) -> usize {
        self.findings.iter().filter(|f| f.kind == "mismatch").count()
    }
    /// Share of rows that are right, in percent (100 for an empty database).
    pub fn rate(&self) -> f64 {
        if self.rows == 0 { 100.0 } else { 100.0 * (self.rows - self.findings.len() as u64) as f64 / self.rows as f64 }
    }
}

/// Compares expected and stored rows by key; `diff` names differing fields.
fn compare<K: Ord + Clone + std::fmt::Debug, R: std::fmt::Debug>(
    model: &'static str,
    expected: Vec<(K, R)>,
    stored: Vec<(K, R)>,
    diff: impl Fn(&R, &R) -> Vec<&'static str>,
    field_value: impl Fn(&R, &str) -> String,
    report: &mut ConsistencyReport,
    bad: &mut Vec<K>,
) {
    let expected: BTreeMap<K, R> = expected.into_iter().collect();
    let mut stored: BTreeMap<K, R> = stored.into_iter().collect();
    let keys: BTreeSet<K> = expected.keys().chain(stored.keys()).cloned().collect();
    report.rows += keys.len() as u64;
    for (k, e) in expected {
        match stored.remove(&k) {
            None => {
                report.findings.push(Finding { model, key: format!("{k:?}"), kind: "missing", fields: Vec::new() });
                bad.push(k);
            }
            Some(s) => {
                let fields = diff(&e, &s);
                if !fields.is_empty() {
                    let fields =
                        fields.into_iter().map(|f| (f.to_owned(), field_value(&e, f), field_value(&s, f))).collect();
                    report.findings.push(Finding { model, key: format!("{k:?}"), kind: "mismatch", fields });
                    bad.push(k);
                }
            }
        }
    }
    for k in stored.into_keys() {
        report.findings.push(Finding { model, key: format!("{k:?}"), kind: "extra", fields: Vec::new() });
        bad.push(k);
    }
}

fn field_of<T: std::fmt::Debug>(row: &T, field: &str) -> String {
    // Debug output of a struct row is `Name { a: 1, b: "x", … }`; pick the field.
    let text = format!("{row:?}");
    let pat = format!("{field}: ");
    text.split(&pat)
        .nth(1)
        .map(|rest| rest.split(", ").next().unwrap_or("").trim_end_matches(" }").to_owned())
        .unwrap_or_default()
}

impl<D: Database> App<D> {
    /// Checks every read-model row (or those of `only`), and with `repair` rewrites the
    /// wrong ones from the write side. `progress(owners done)` is called per batch.
    #[tracing::instrument(level = "debug", skip_all, fields(repair, only = ?only))]
    pub async fn check_consistency(
        &self,
        repair: bool,
        only: Option<UserId>,
        progress: impl Fn(u64),
    ) -> Result<ConsistencyReport> {
        let mut report = ConsistencyReport::default();
        let mut after = 0i64;
        loop {
            let owners: Vec<UserId> = match only {
                Some(u) if after == 0 => vec![u],
                Some(_) => Vec::new(),
                None => self.db.user_ids_after(after, BATCH).await?,
            };
            let Some(last) = owners.last() else { break };
            after = last.get().max(1);
            let findings_before = report.findings.len();
            let mut bad_owners: Vec<UserId> = Vec::new();

            let (exp, sto) =
                tokio::try_join!(self.db.expected_conversations(&owners), self.db.stored_conversations(&owners))?;
            let mut bad = Vec::new();
            compare(
                "conversation",
                exp.into_iter().map(|r| ((r.user_id, r.channel_id), r)).collect(),
                sto.into_iter().map(|r| ((r.user_id, r.channel_id), r)).collect(),
                |a, b| a.diff(b),
                field_of,
                &mut report,
                &mut bad,
            );
            bad_owners.extend(bad.iter().map(|(u, _)| *u));

            let (exp, sto) = tokio::try_join!(self.db.expected_contacts(&owners), self.db.stored_contacts(&owners))?;
            let mut bad = Vec::new();
            compare(
                "contact",
                exp.into_iter().map(|r| ((r.user_id, r.contact_id), r)).collect(),
                sto.into_iter().map(|r| ((r.user_id, r.contact_id), r)).collect(),
                |a, b| a.diff(b),
                field_of,
                &mut report,
                &mut bad,
            );
            bad_owners.extend(bad.iter().map(|(u, _)| *u));

            let (exp, sto) = self.db.reverse_conversations(&owners).await?;
            let mut bad = Vec::new();
            compare(
                "conversation_reverse_index",
                exp.into_iter().map(|k| (k, ())).collect(),
                sto.into_iter().map(|k| (k, ())).collect(),
                |_, _| Vec::new(),
                |_, _| String::new(),
                &mut report,
                &mut bad,
            );
            bad_owners.extend(bad.iter().map(|(_, o, _)| UserId(*o)));

            let (exp, sto) = self.db.reverse_contacts(&owners).await?;
            let mut bad = Vec::new();
            compare(
                "contact_reverse_index",
                exp.into_iter().map(|k| (k, ())).collect(),
                sto.into_iter().map(|k| (k, ())).collect(),
                |_, _| Vec::new(),
                |_, _| String::new(),
                &mut report,
                &mut bad,
            );
            bad_owners.extend(bad.iter().map(|(_, o)| UserId(*o)));

            report.owners += owners.len() as u64;
            if repair && report.findings.len() > findings_before {
                bad_owners.sort_unstable();
                bad_owners.dedup();
                self.rebuild_owners(&bad_owners).await?;
                report.repaired += (report.findings.len() - findings_before) as u64;
            }
            progress(report.owners);
            if only.is_some() {
                break;
            }
        }
        Ok(report)
    }

    /// Rebuilds every read-model row of these owners from the write side, in one transaction.
    #[tracing::instrument(level = "debug", skip_all, fields(owners = owners.len()))]
    pub async fn rebuild_owners(&self, owners: &[UserId]) -> Result<()> {
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        tx.delete_orphans(owners).await?;
        tx.apply_refresh(&Refresh { owners: owners.to_vec(), ..Refresh::default() }, now).await?;
        tx.touched().list_owners.extend_from_slice(owners);
        self.commit_touching(tx).await?;
        Ok(())
    }

    /// `hermet rebuild-views [--user ID]`: rebuilds the read models from the write side,
    /// batch by batch; returns the number of owners processed.
    #[tracing::instrument(level = "debug", skip_all, fields(only = ?only))]
    pub async fn rebuild_views(&self, only: Option<UserId>, progress: impl Fn(u64)) -> Result<u64> {
        if let Some(u) = only {
            self.rebuild_owners(&[u]).await?;
            progress(1);
            return Ok(1);
        }
        let mut after = 0i64;
        let mut done = 0u64;
        loop {
            let owners = self.db.user_ids_after(after, BATCH).await?;
            let Some(last) = owners.last() else { break };
            after = last.get();
            self.rebuild_owners(&owners).await?;
            done += owners.len() as u64;
            progress(done);
        }
        Ok(done)
    }
}
