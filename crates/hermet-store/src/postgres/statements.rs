//! Running statements on a pooled PostgreSQL connection: preparation (kept in the
//! connection's statement cache or not, as the pool's settings say) and the query
//! helpers every part of the driver uses.

use std::ops::{Deref, DerefMut};

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;

use super::pg_err;
use crate::StoreError;

pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A pooled connection and its pool's `statement_cache` setting.
pub(crate) struct PgConn {
    conn: Object,
    statement_cache: bool,
}

impl PgConn {
    pub(super) fn new(conn: Object, statement_cache: bool) -> Self {
        Self { conn, statement_cache }
    }

    /// The connection itself (to detach it from its pool).
    pub(super) fn into_object(self) -> Object {
        self.conn
    }

    /// Prepares `sql`: from the connection's statement cache, or afresh when statement
    /// caching is off.
    pub(crate) async fn prep(&self, sql: &str) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        if self.statement_cache { self.conn.prepare_cached(sql).await } else { self.conn.prepare(sql).await }
    }
}

impl Deref for PgConn {
    type Target = Object;
    fn deref(&self) -> &Object {
        &self.conn
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut Object {
        &mut self.conn
    }
}

pub(super) async fn query_map<T>(
    c: &PgConn,
    sql: &str,
    params: Params<'_>,
    f: fn(&tokio_postgres::Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let stmt = c.prep(sql).await.map_err(pg_err)?;
    let rows = c.query(&stmt, params).await.map_err(pg_err)?;
    rows.iter().map(f).collect()
}

pub(super) async fn query_opt<T>(
    c: &PgConn,
    sql: &str,
    params: Params<'_>,
    f: fn(&tokio_postgres::Row) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let stmt = c.prep(sql).await.map_err(pg_err)?;
    c.query_opt(&stmt, params).await.map_err(pg_err)?.as_ref().map(f).transpose()
}

pub(super) async fn exec(c: &PgConn, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
    let stmt = c.prep(sql).await.map_err(pg_err)?;
    c.execute(&stmt, params).await.map_err(pg_err)
}

/// Runs `stmt` unless its key set is empty (no statement, no rows).
pub(super) async fn query_unless_empty(
    c: &PgConn,
    stmt: &tokio_postgres::Statement,
    params: Params<'_>,
    empty: bool,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    if empty { Ok(Vec::new()) } else { c.query(stmt, params).await }
}

pub(super) fn ids<T: Copy + Into<i64>>(v: &[T]) -> Vec<i64> {
    v.iter().map(|x| (*x).into()).collect()
}
