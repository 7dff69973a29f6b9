//! Errors of the storage layer. Drivers translate their database's errors into these,
//! naming unique violations by constraint (SQLite, which reports only columns, is
//! translated to the same names), so callers never parse messages.

use hermet_domain::Error;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint or unique index was violated; `constraint` is its name in the
    /// PostgreSQL schema.
    #[error("unique constraint {constraint} violated")]
    UniqueViolation { constraint: String },
    /// The database could not be reached or no connection was free in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl StoreError {
    pub fn other(e: impl Into<anyhow::Error>) -> Self {
        StoreError::Other(e.into())
    }

    pub fn is_unique(&self, constraint: &str) -> bool {
        matches!(self, StoreError::UniqueViolation { constraint: c } if c == constraint)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "database unavailable");
                Error::DatabaseUnavailable
            }
            // A violation the command did not anticipate is a bug, not a client error.
            other => Error::Internal(anyhow::Error::new(other)),
        }
    }
}
