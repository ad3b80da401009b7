//! An in-memory engine for tests and simulation. A commit is "durable" the moment it returns;
//! the engine lives as long as its owner keeps it. A deferred commit is undone by
//! [`MemEngine::lose_deferred`] unless a durable commit came after it, which is what a crash
//! does to redb, so the simulator's crashes test that deferred commits are safe.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use crate::{Engine, KeyRange, Op, Result, Row, Table, WriteBatch};

type Tables = BTreeMap<(Table, Vec<u8>), Vec<u8>>;

/// A row's value before a deferred commit changed it (`None`: absent).
type Undo = Vec<((Table, Vec<u8>), Option<Vec<u8>>)>;

#[derive(Default)]
pub struct MemEngine {
    tables: Mutex<Tables>,
    /// What undoes every deferred commit since the last durable one, oldest first.
    undo: Mutex<Undo>,
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
        Self::apply(&mut tables, batches, None);
        // Durable, and so is every deferred commit before it.
        self.undo.lock().unwrap().clear();
        Ok(())
    }

    fn commit_deferred(&self, batches: &[WriteBatch]) -> Result<()> {
        let mut tables = self.tables.lock().unwrap();
        let mut undo = self.undo.lock().unwrap();
        Self::apply(&mut tables, batches, Some(&mut undo));
        Ok(())
    }

    fn rewrite(
        &self,
        table: Table,
        start: &[u8],
        limit: usize,
        f: &mut crate::RewriteFn<'_>,
    ) -> Result<(usize, Option<Vec<u8>>)> {
        let mut tables = self.tables.lock().unwrap();
        let lo = Bound::Included((table, start.to_vec()));
        let rows: Vec<Row> = tables
            .range((lo, Bound::Unbounded))
            .take_while(|((t, _), _)| *t == table)
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect();
        let mut next = None;
        for (k, v) in &rows {
            if let Some(new) = f(k, v)? {
                tables.insert((table, k.clone()), new);
            }
            next = Some(crate::successor(k));
        }
        // Durable, and so is every deferred commit before it.
        self.undo.lock().unwrap().clear();
        Ok((rows.len(), if rows.len() < limit { None } else { next }))
    }
}

impl MemEngine {
    /// What a crash does: every deferred commit not followed by a durable one is undone.
    pub fn lose_deferred(&self) {
        let mut tables = self.tables.lock().unwrap();
        let mut undo = self.undo.lock().unwrap();
        while let Some((key, old)) = undo.pop() {
            match old {
                Some(v) => tables.insert(key, v),
                None => tables.remove(&key),
            };
        }
    }

    /// Applies `batches`; with `undo`, records how to take each change back.
    fn apply(tables: &mut Tables, batches: &[WriteBatch], mut undo: Option<&mut Undo>) {
        let mut set = |tables: &mut Tables, key: (Table, Vec<u8>), value: Option<Vec<u8>>| {
            let old = match value {
                Some(v) => tables.insert(key.clone(), v),
                None => tables.remove(&key),
            };
            if let Some(u) = undo.as_deref_mut() {
                u.push((key, old));
            }
        };
        for op in batches.iter().flat_map(|b| b.ops.iter()) {
            match op {
                Op::Put { table, key, value } => {
                    set(tables, (*table, key.clone()), Some(value.clone()));
                }
                Op::Delete { table, key } => {
                    set(tables, (*table, key.clone()), None);
                }
                Op::DeleteRange { table, start, end } => {
                    for (k, _) in Self::range(tables, *table, start, end) {
                        set(tables, (*table, k), None);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(table: Table, key: &[u8], value: &[u8]) -> WriteBatch {
        let mut b = WriteBatch::default();
        b.put(table, key.to_vec(), value.to_vec());
        b
    }

    // Goal: a crash takes back exactly the deferred commits after the last durable one, newest
    // first, restoring overwritten and deleted rows; what a durable commit covered stays.
    #[test]
    fn a_crash_loses_only_deferred_commits_after_the_last_durable_one() {
        let e = MemEngine::new();
        e.commit(&[put(Table::Data, b"a", b"1")]).unwrap();
        e.commit_deferred(&[put(Table::Data, b"b", b"1")]).unwrap();
        e.commit(&[put(Table::Log, b"l", b"1")]).unwrap();
        // After the last durable commit: an overwrite, a delete, a new row, another overwrite.
        e.commit_deferred(&[put(Table::Data, b"a", b"2")]).unwrap();
        let mut d = WriteBatch::default();
        d.delete(Table::Data, b"b".to_vec());
        e.commit_deferred(&[d, put(Table::Data, b"c", b"1")])
            .unwrap();
        e.commit_deferred(&[put(Table::Data, b"a", b"3")]).unwrap();
        assert_eq!(e.get(Table::Data, b"a").unwrap(), Some(b"3".to_vec()));
        assert_eq!(e.get(Table::Data, b"b").unwrap(), None);
        e.lose_deferred();
        assert_eq!(e.get(Table::Data, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(e.get(Table::Data, b"b").unwrap(), Some(b"1".to_vec()));
        assert_eq!(e.get(Table::Data, b"c").unwrap(), None);
        assert_eq!(e.get(Table::Log, b"l").unwrap(), Some(b"1".to_vec()));
        // Nothing left to lose.
        e.lose_deferred();
        assert_eq!(e.get(Table::Data, b"a").unwrap(), Some(b"1".to_vec()));
    }
}
