//! The redb engine: one database file per node, one table per [`Table`], fsync on every commit.

use std::path::Path;

use redb::{Database, Durability, ReadableTable, TableDefinition};

use crate::{Engine, KeyRange, Op, Result, Row, StorageError, Table, WriteBatch};

const LOG: TableDefinition<&[u8], &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");
const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");

fn definition(table: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    match table {
        Table::Log => LOG,
        Table::Meta => META,
        Table::Data => DATA,
    }
}

fn io<E: std::fmt::Display>(e: E) -> StorageError {
    StorageError::Io(e.to_string())
}

pub struct RedbEngine {
    db: Database,
}

impl RedbEngine {
    /// Opens or creates the database file at `path`, creating every table.
    pub fn open(path: &Path) -> Result<RedbEngine> {
        let db = Database::create(path)
            .map_err(|e| StorageError::Io(format!("open {}: {e}", path.display())))?;
        let tx = db.begin_write().map_err(io)?;
        for table in Table::ALL {
            tx.open_table(definition(table)).map_err(io)?;
        }
        tx.commit().map_err(io)?;
        Ok(RedbEngine { db })
    }
}

impl Engine for RedbEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let tx = self.db.begin_read().map_err(io)?;
        let t = tx.open_table(definition(table)).map_err(io)?;
        Ok(t.get(key).map_err(io)?.map(|v| v.value().to_vec()))
    }

    fn scan(&self, table: Table, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Row>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let tx = self.db.begin_read().map_err(io)?;
        let t = tx.open_table(definition(table)).map_err(io)?;
        let mut out = Vec::new();
        for item in t.range(start..end).map_err(io)?.take(limit) {
            let (k, v) = item.map_err(io)?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn last(&self, table: Table, start: &[u8], end: &[u8]) -> Result<Option<Row>> {
        if start >= end {
            return Ok(None);
        }
        let tx = self.db.begin_read().map_err(io)?;
        let t = tx.open_table(definition(table)).map_err(io)?;
        let mut range = t.range(start..end).map_err(io)?;
        match range.next_back() {
            Some(item) => {
                let (k, v) = item.map_err(io)?;
                Ok(Some((k.value().to_vec(), v.value().to_vec())))
            }
            None => Ok(None),
        }
    }

    fn scan_consistent(&self, ranges: &[KeyRange]) -> Result<Vec<Vec<Row>>> {
        let tx = self.db.begin_read().map_err(io)?;
        let mut out = Vec::with_capacity(ranges.len());
        for (table, start, end) in ranges {
            let mut rows = Vec::new();
            if start < end {
                let t = tx.open_table(definition(*table)).map_err(io)?;
                for item in t.range(start.as_slice()..end.as_slice()).map_err(io)? {
                    let (k, v) = item.map_err(io)?;
                    rows.push((k.value().to_vec(), v.value().to_vec()));
                }
            }
            out.push(rows);
        }
        Ok(out)
    }

    fn commit(&self, batches: &[WriteBatch]) -> Result<()> {
        self.commit_with(batches, Durability::Immediate)
    }

    fn commit_deferred(&self, batches: &[WriteBatch]) -> Result<()> {
        // redb persists a `None` commit with the next `Immediate` one, in commit order.
        self.commit_with(batches, Durability::None)
    }

    fn rewrite(
        &self,
        table: Table,
        start: &[u8],
        limit: usize,
        f: &mut crate::RewriteFn<'_>,
    ) -> Result<(usize, Option<Vec<u8>>)> {
        // One write transaction: redb runs one at a time, so no commit lands between a
        // value's read and its replacement.
        let tx = self.db.begin_write().map_err(io)?;
        let (visited, next) = {
            let mut t = tx.open_table(definition(table)).map_err(io)?;
            let mut rows: Vec<Row> = Vec::new();
            for item in t.range(start..).map_err(io)?.take(limit) {
                let (k, v) = item.map_err(io)?;
                rows.push((k.value().to_vec(), v.value().to_vec()));
            }
            let mut next = None;
            for (k, v) in &rows {
                if let Some(new) = f(k, v)? {
                    t.insert(k.as_slice(), new.as_slice()).map_err(io)?;
                }
                next = Some(crate::successor(k));
            }
            (rows.len(), next)
        };
        tx.commit().map_err(io)?;
        Ok((visited, if visited < limit { None } else { next }))
    }
}

impl RedbEngine {
    fn commit_with(&self, batches: &[WriteBatch], durability: Durability) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(io)?;
        tx.set_durability(durability);
        {
            let mut tables = [
                tx.open_table(LOG).map_err(io)?,
                tx.open_table(META).map_err(io)?,
                tx.open_table(DATA).map_err(io)?,
            ];
            let index = |t: Table| match t {
                Table::Log => 0,
                Table::Meta => 1,
                Table::Data => 2,
            };
            for op in batches.iter().flat_map(|b| b.ops.iter()) {
                match op {
                    Op::Put { table, key, value } => {
                        tables[index(*table)]
                            .insert(key.as_slice(), value.as_slice())
                            .map_err(io)?;
                    }
                    Op::Delete { table, key } => {
                        tables[index(*table)].remove(key.as_slice()).map_err(io)?;
                    }
                    Op::DeleteRange { table, start, end } => {
                        if start < end {
                            tables[index(*table)]
                                .retain_in(start.as_slice()..end.as_slice(), |_, _| false)
                                .map_err(io)?;
                        }
                    }
                }
            }
        }
        tx.commit().map_err(io)
    }
}
