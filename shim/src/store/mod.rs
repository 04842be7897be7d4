//! The metadata store: one embedded ACID database (`<root>/meta.redb`) for pods,
//! containers, images and snapshot references. Values are JSON documents keyed by
//! id in named tables; every write is one redb transaction, so a crash leaves the
//! old or the new state, never a mix. Subsystems that need several keys updated
//! together use [`Store::db`] and a write transaction of their own.

use std::path::Path;

pub mod dirs;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

/// Handle to `meta.redb`; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

fn table(name: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(name)
}

impl Store {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            dirs::create_private(dir)?;
        }
        // Pod and container configs (env values included) live here: made
        // 0600 before redb opens it, so it is never readable by others.
        dirs::private_file(path)?;
        let db = Database::create(path)?;
        Ok(Store { db })
    }

    /// The raw database, for multi-table transactions.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Inserts or replaces `key` in `table_name`.
    pub fn put<T: Serialize>(&self, table_name: &str, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Store(e.to_string()))?;
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(table(table_name))?;
            t.insert(key, bytes.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Reads `key` from `table_name`.
    pub fn get<T: DeserializeOwned>(&self, table_name: &str, key: &str) -> Result<Option<T>> {
        let tx = self.db.begin_read()?;
        let t = match tx.open_table(table(table_name)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match t.get(key)? {
            Some(v) => {
                Ok(Some(serde_json::from_slice(v.value()).map_err(|e| {
                    Error::Store(format!("{table_name}/{key}: {e}"))
                })?))
            }
            None => Ok(None),
        }
    }

    /// Removes `key`; returns whether it was there.
    pub fn delete(&self, table_name: &str, key: &str) -> Result<bool> {
        let tx = self.db.begin_write()?;
        let existed = {
            let mut t = tx.open_table(table(table_name))?;
            let removed = t.remove(key)?;
            removed.is_some()
        };
        tx.commit()?;
        Ok(existed)
    }

    /// Every `(key, value)` of `table_name`, in key order.
    pub fn list<T: DeserializeOwned>(&self, table_name: &str) -> Result<Vec<(String, T)>> {
        let tx = self.db.begin_read()?;
        let t = match tx.open_table(table(table_name)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            let value = serde_json::from_slice(v.value())
                .map_err(|e| Error::Store(format!("{table_name}/{}: {e}", k.value())))?;
            out.push((k.value().to_string(), value));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        {
            let s = Store::open(&path).unwrap();
            s.put("pods", "b", &2u32).unwrap();
            s.put("pods", "a", &1u32).unwrap();
            assert_eq!(s.get::<u32>("pods", "a").unwrap(), Some(1));
            assert_eq!(s.get::<u32>("nothing", "a").unwrap(), None);
        }
        let s = Store::open(&path).unwrap();
        let all: Vec<(String, u32)> = s.list("pods").unwrap();
        assert_eq!(all, vec![("a".into(), 1), ("b".into(), 2)]);
        assert!(s.delete("pods", "a").unwrap());
        assert!(!s.delete("pods", "a").unwrap());
        assert_eq!(s.list::<u32>("pods").unwrap().len(), 1);
    }
}
