//! Running statements on a SQLite connection: every statement is prepared once per
//! connection (its statement cache) with `$n` rewritten to `?n`; key sets are bound
//! as JSON arrays, read with `json_each`.

use rusqlite::{Connection, OptionalExtension, Params, Row};

use crate::queries::sqlite_placeholders;

pub(super) fn qmap<T, P: Params>(
    c: &Connection,
    sql: &str,
    p: P,
    f: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut stmt = c.prepare_cached(&sqlite_placeholders(sql))?;
    let rows = stmt.query_map(p, f)?;
    rows.collect()
}

pub(super) fn qopt<T, P: Params>(
    c: &Connection,
    sql: &str,
    p: P,
    f: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    c.prepare_cached(&sqlite_placeholders(sql))?.query_row(p, f).optional()
}

pub(super) fn exec<P: Params>(c: &Connection, sql: &str, p: P) -> rusqlite::Result<usize> {
    c.prepare_cached(&sqlite_placeholders(sql))?.execute(p)
}

pub(super) fn json_ids<T: Copy + Into<i64>>(v: &[T]) -> String {
    let ids: Vec<i64> = v.iter().map(|x| (*x).into()).collect();
    serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into())
}

pub(super) fn json_pairs<A: Copy + Into<i64>, B: Copy + Into<i64>>(v: &[(A, B)]) -> String {
    let pairs: Vec<[i64; 2]> = v.iter().map(|(a, b)| [(*a).into(), (*b).into()]).collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into())
}
