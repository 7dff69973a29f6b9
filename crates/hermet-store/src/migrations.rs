//! Released migrations keep their SQL. Where only a migration's comments were reworded, a
//! database that applied the earlier wording holds that text's checksum in
//! `refinery_schema_history`, and refinery would refuse it as divergent. Before refinery
//! runs, each driver replaces such a recorded checksum by the current text's, for the
//! versions and earlier checksums listed here and no other: a database holding any other
//! text of a migration is still refused.

/// A migration whose comments were reworded after release: its version and the checksum
/// of the earlier wording.
pub struct Reworded {
    pub version: i32,
    pub earlier: u64,
}

/// The PostgreSQL migrations' rewordings.
pub const POSTGRES: &[Reworded] = &[
    Reworded { version: 2, earlier: 16107140125310680911 },
    Reworded { version: 4, earlier: 4962944272671342884 },
    Reworded { version: 5, earlier: 14801457353262542729 },
];

/// The SQLite migrations' rewordings.
pub const SQLITE: &[Reworded] = &[
    Reworded { version: 2, earlier: 13412032081653438649 },
    Reworded { version: 4, earlier: 15427484553858460139 },
    Reworded { version: 5, earlier: 18397545763222698937 },
];

/// The history table's name (refinery's default).
pub(crate) const HISTORY: &str = "refinery_schema_history";

/// `UPDATE` of one recorded checksum: parameters new checksum, version, earlier checksum.
pub(crate) const UPDATE_CHECKSUM: &str =
    "UPDATE refinery_schema_history SET checksum = $1 WHERE version = $2 AND checksum = $3";

/// (current checksum, version, earlier checksum) for each reworded migration, as the
/// history table stores checksums (decimal text).
pub(crate) fn updates(reworded: &[Reworded], current: &[refinery::Migration]) -> Vec<(String, i32, String)> {
    reworded
        .iter()
        .filter_map(|r| {
            let now = current.iter().find(|m| i64::from(m.version()) == i64::from(r.version))?;
            (now.checksum() != r.earlier).then(|| (now.checksum().to_string(), r.version, r.earlier.to_string()))
        })
        .collect()
}

/// The rewordings of `backend`'s migrations.
pub fn reworded(backend: crate::Backend) -> &'static [Reworded] {
    match backend {
        crate::Backend::Postgres => POSTGRES,
        crate::Backend::Sqlite => SQLITE,
    }
}
