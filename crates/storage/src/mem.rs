//! An in-memory engine for tests and simulation. A commit is "durable" the moment it returns;
//! the engine lives as long as its owner keeps it.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use crate::{Engine, KeyRange, Op, Result, Row, Table, WriteBatch};

type Tables = BTreeMap<(Table, Vec<u8>), Vec<u8>>;

#[derive(Default)]
pub struct MemEngine {
    tables: Mutex<Tables>,
}

impl MemEngine {
    pub fn new() -> MemEngine {
        MemEngine::default()
    }

    fn range(tables: &Tables, table: Table, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        if start >= end {
            return Vec::new();
        }
        let lo = Bound::Included((table, start.to_vec()));
        let hi = Bound::Excluded((table, end.to_vec()));
        tables
            .range((lo, hi))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl Engine for MemEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tables
            .lock()
            .unwrap()
            .get(&(table, key.to_vec()))
            .cloned())
    }

    fn scan(&self, table: Table, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Row>> {
        let tables = self.tables.lock().unwrap();
        let mut out = Self::range(&tables, table, start, end);
        out.truncate(limit);
        Ok(out)
    }

    fn last(&self, table: Table, start: &[u8], end: &[u8]) -> Result<Option<Row>> {
        let tables = self.tables.lock().unwrap();
        Ok(Self::range(&tables, table, start, end).pop())
    }

    fn scan_consistent(&self, ranges: &[KeyRange]) -> Result<Vec<Vec<Row>>> {
        let tables = self.tables.lock().unwrap();
        Ok(ranges
            .iter()
            .map(|(t, start, end)| Self::range(&tables, *t, start, end))
            .collect())
    }

    fn commit(&self, batches: &[WriteBatch]) -> Result<()> {
        let mut tables = self.tables.lock().unwrap();
        for op in batches.iter().flat_map(|b| b.ops.iter()) {
            match op {
                Op::Put { table, key, value } => {
                    tables.insert((*table, key.clone()), value.clone());
                }
                Op::Delete { table, key } => {
                    tables.remove(&(*table, key.clone()));
                }
                Op::DeleteRange { table, start, end } => {
                    for (k, _) in Self::range(&tables, *table, start, end) {
                        tables.remove(&(*table, k));
                    }
                }
            }
        }
        Ok(())
    }
}
