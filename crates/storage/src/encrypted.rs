//! Encryption at rest: an [`Engine`] wrapper that seals every value (log entries, consensus
//! metadata and snapshots, user data) with AES-256-GCM before the inner engine sees it.
//!
//! - A value on disk is `E5 01 | key id (u32 BE) | nonce (12) | ciphertext | tag (16)`; the
//!   additional data binds it to its table and key, so a value moved to another row does not
//!   open. Keys stay in the clear: ordered scans need them (documented in ARCHITECTURE.md).
//! - Data keys are random, one active at a time, kept in `keyring.json` in the data directory
//!   wrapped (AES-256-GCM) by the key-encryption key (KEK), which comes from a file or the
//!   environment and is never written to the data directory.
//! - [`EncryptedEngine::rotate`] makes a new data key active at once (the keyring is fsynced
//!   before any value uses it); [`EncryptedEngine::reencrypt_step`] then re-seals older values
//!   in place, a bounded chunk per durable transaction, and once a whole pass finds none left
//!   under an older key, [`EncryptedEngine::retire`] drops those keys from the keyring.
//!
//! Invariant: a commit holds the keyring's read lock from sealing to its inner commit's return
//! and a rotation takes the write lock, so when `rotate` returns no commit sealed under an older
//! key is still in flight: one pass then finds every such value, and retiring is safe.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::{Engine, KeyRange, Op, Result, Row, SharedEngine, StorageError, Table, WriteBatch};

const MAGIC: [u8; 2] = [0xE5, 0x01];
const HEADER: usize = 2 + 4 + NONCE_LEN;
const TAG: usize = 16;
/// The keyring's file name in the data directory.
pub const KEYRING_FILE: &str = "keyring.json";
/// Values re-sealed per durable transaction during re-encryption.
pub const REENCRYPT_CHUNK: usize = 256;

/// A key-encryption key: 32 bytes, from a file or the environment (64 hex digits).
#[derive(Clone)]
pub struct Kek([u8; 32]);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Kek {
    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn parse(text: &str) -> std::result::Result<Kek, String> {
        let bytes = unhex(text.trim()).filter(|b| b.len() == 32).ok_or(
            "a key-encryption key is 64 hex digits (32 bytes); generate one with `meridian admin new-kek`",
        )?;
        let mut k = [0u8; 32];
        k.copy_from_slice(&bytes);
        Ok(Kek(k))
    }

    /// A new random key, as 64 hex digits.
    pub fn generate_hex() -> String {
        let mut k = [0u8; 32];
        SystemRandom::new()
            .fill(&mut k)
            .expect("the system random source works");
        hex(&k)
    }
}

fn aead_key(bytes: &[u8]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("32-byte AES-256 key"))
}

fn err(msg: impl Into<String>) -> StorageError {
    StorageError::Io(msg.into())
}

#[derive(Serialize, Deserialize)]
struct KeyringFile {
    version: u32,
    active: u32,
    keys: Vec<WrappedKey>,
}

#[derive(Serialize, Deserialize)]
struct WrappedKey {
    id: u32,
    created_ms: u64,
    /// nonce | ciphertext | tag of the 32-byte data key under the KEK, hex.
    wrapped: String,
}

struct DataKey {
    key: LessSafeKey,
    created_ms: u64,
    /// The wrapped form, as stored.
    wrapped: String,
}

struct Keyring {
    active: u32,
    keys: BTreeMap<u32, DataKey>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn wrap_aad(id: u32) -> Vec<u8> {
    format!("meridian keyring v1 key {id}").into_bytes()
}

/// What [`EncryptedEngine::status`] reports.
#[derive(Clone, Debug, Serialize)]
pub struct EncryptionStatus {
    pub active_key: u32,
    /// Every key in the keyring (the active one and those not yet retired), oldest first.
    pub keys: Vec<u32>,
    /// Values re-sealed under the active key since this process started.
    pub reencrypted_values: u64,
    /// Rotations since this process started.
    pub rotations: u64,
}

pub struct EncryptedEngine {
    inner: SharedEngine,
    kek: LessSafeKey,
    keyring_path: PathBuf,
    ring: RwLock<Keyring>,
    rng: SystemRandom,
    reencrypted: AtomicU64,
    rotations: AtomicU64,
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never a mix.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| err(format!("{}: {e}", tmp.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| err(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| err(format!("{}: {e}", dir.display())))?;
    }
    Ok(())
}

impl EncryptedEngine {
    /// Wraps `inner`, whose data directory is `dir`, with the keyring there (created with a
    /// first data key when `inner` holds nothing yet). Refuses a KEK that does not open the
    /// keyring, and an engine that already holds unencrypted data.
    pub fn open(inner: SharedEngine, dir: &Path, kek: &Kek) -> Result<Arc<EncryptedEngine>> {
        let keyring_path = dir.join(KEYRING_FILE);
        let e = EncryptedEngine {
            inner,
            kek: aead_key(&kek.0),
            keyring_path: keyring_path.clone(),
            ring: RwLock::new(Keyring {
                active: 0,
                keys: BTreeMap::new(),
            }),
            rng: SystemRandom::new(),
            reencrypted: AtomicU64::new(0),
            rotations: AtomicU64::new(0),
        };
        if keyring_path.exists() {
            let text = std::fs::read_to_string(&keyring_path)
                .map_err(|e| err(format!("{}: {e}", keyring_path.display())))?;
            let file: KeyringFile = serde_json::from_str(&text)
                .map_err(|e| err(format!("{} does not parse: {e}", keyring_path.display())))?;
            let mut ring = e.ring.write().unwrap();
            for k in file.keys {
                let key = e.unwrap_key(k.id, &k.wrapped)?;
                ring.keys.insert(
                    k.id,
                    DataKey {
                        key,
                        created_ms: k.created_ms,
                        wrapped: k.wrapped,
                    },
                );
            }
            if !ring.keys.contains_key(&file.active) {
                return Err(err(format!(
                    "{}: the active key {} is not in the keyring",
                    keyring_path.display(),
                    file.active
                )));
            }
            ring.active = file.active;
        } else {
            for t in Table::ALL {
                if e.inner.last(t, &[], &[0xff; 64])?.is_some() {
                    return Err(err(format!(
                        "{} holds unencrypted data and no keyring: encryption at rest can be turned on only for a new data directory (or move the data through another node)",
                        dir.display()
                    )));
                }
            }
            let mut ring = e.ring.write().unwrap();
            e.add_key(&mut ring, 1)?;
        }
        Ok(Arc::new(e))
    }

    fn unwrap_key(&self, id: u32, wrapped: &str) -> Result<LessSafeKey> {
        let bytes = unhex(wrapped)
            .filter(|b| b.len() == NONCE_LEN + 32 + TAG)
            .ok_or_else(|| err(format!("keyring key {id} is malformed")))?;
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("12 bytes");
        let mut buf = sealed.to_vec();
        let plain = self
            .kek
            .open_in_place(nonce, Aad::from(wrap_aad(id)), &mut buf)
            .map_err(|_| {
                err(format!(
                    "the key-encryption key does not open data key {id} of {}: is it the KEK this data directory was created with ([encryption] kek_file or MERIDIAN_KEK)?",
                    self.keyring_path.display()
                ))
            })?;
        Ok(aead_key(plain))
    }

    /// Adds data key `id`, makes it active and writes the keyring durably.
    fn add_key(&self, ring: &mut Keyring, id: u32) -> Result<()> {
        let mut key = [0u8; 32];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut key)
            .and_then(|()| self.rng.fill(&mut nonce))
            .map_err(|_| err("the system random source failed"))?;
        let mut sealed = key.to_vec();
        self.kek
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(wrap_aad(id)),
                &mut sealed,
            )
            .map_err(|_| err("sealing a data key failed"))?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&sealed);
        ring.keys.insert(
            id,
            DataKey {
                key: aead_key(&key),
                created_ms: now_ms(),
                wrapped: hex(&wrapped),
            },
        );
        let previous = ring.active;
        ring.active = id;
        if let Err(e) = self.persist(ring) {
            ring.keys.remove(&id);
            ring.active = previous;
            return Err(e);
        }
        Ok(())
    }

    fn persist(&self, ring: &Keyring) -> Result<()> {
        let file = KeyringFile {
            version: 1,
            active: ring.active,
            keys: ring
                .keys
                .iter()
                .map(|(id, k)| WrappedKey {
                    id: *id,
                    created_ms: k.created_ms,
                    wrapped: k.wrapped.clone(),
                })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&file).expect("the keyring serialises");
        write_durably(&self.keyring_path, text.as_bytes())
    }

    /// Starts sealing with a new data key at once; returns its id. Older keys stay until a
    /// re-encryption pass has moved every value off them ([`EncryptedEngine::retire`]).
    pub fn rotate(&self) -> Result<u32> {
        let mut ring = self.ring.write().unwrap();
        let id = ring.keys.keys().next_back().copied().unwrap_or(0) + 1;
        self.add_key(&mut ring, id)?;
        self.rotations.fetch_add(1, Ordering::Relaxed);
        debug_assert_eq!(ring.active, id);
        Ok(id)
    }

    pub fn status(&self) -> EncryptionStatus {
        let ring = self.ring.read().unwrap();
        EncryptionStatus {
            active_key: ring.active,
            keys: ring.keys.keys().copied().collect(),
            reencrypted_values: self.reencrypted.load(Ordering::Relaxed),
            rotations: self.rotations.load(Ordering::Relaxed),
        }
    }

    /// Whether keys other than the active one remain (a re-encryption pass is due).
    pub fn has_old_keys(&self) -> bool {
        self.ring.read().unwrap().keys.len() > 1
    }

    fn aad(table: Table, key: &[u8]) -> Vec<u8> {
        let mut a = Vec::with_capacity(1 + key.len());
        a.push(table as u8);
        a.extend_from_slice(key);
        a
    }

    fn seal_with(&self, ring: &Keyring, table: Table, key: &[u8], value: &[u8]) -> Result<Vec<u8>> {
        let id = ring.active;
        let k = &ring
            .keys
            .get(&id)
            .expect("the active key is in the keyring")
            .key;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| err("the system random source failed"))?;
        let mut out = Vec::with_capacity(HEADER + value.len() + TAG);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(value);
        let mut body = out.split_off(HEADER);
        k.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(Self::aad(table, key)),
            &mut body,
        )
        .map_err(|_| err("sealing a value failed"))?;
        out.extend_from_slice(&body);
        debug_assert_eq!(out.len(), HEADER + value.len() + TAG);
        Ok(out)
    }

    /// The key id a sealed value names.
    fn key_id(sealed: &[u8]) -> Option<u32> {
        if sealed.len() < HEADER + TAG || sealed[..2] != MAGIC {
            return None;
        }
        Some(u32::from_be_bytes(
            sealed[2..6].try_into().expect("4 bytes"),
        ))
    }

    fn open_with(
        &self,
        ring: &Keyring,
        table: Table,
        key: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>> {
        let id = Self::key_id(sealed).ok_or_else(|| {
            err(format!(
                "a value in table {table:?} is not sealed (data written without encryption, or corrupt)"
            ))
        })?;
        let k = &ring
            .keys
            .get(&id)
            .ok_or_else(|| {
                err(format!(
                    "a value is sealed under data key {id}, which the keyring no longer holds"
                ))
            })?
            .key;
        let nonce = Nonce::try_assume_unique_for_key(&sealed[6..HEADER]).expect("12 bytes");
        let mut buf = sealed[HEADER..].to_vec();
        let n = k
            .open_in_place(nonce, Aad::from(Self::aad(table, key)), &mut buf)
            .map_err(|_| err(format!("a value in table {table:?} does not authenticate: the data file was altered or is corrupt")))?
            .len();
        buf.truncate(n);
        Ok(buf)
    }

    fn open_rows(&self, table: Table, rows: Vec<Row>) -> Result<Vec<Row>> {
        let ring = self.ring.read().unwrap();
        rows.into_iter()
            .map(|(k, v)| {
                let v = self.open_with(&ring, table, &k, &v)?;
                Ok((k, v))
            })
            .collect()
    }

    fn seal_batches(&self, ring: &Keyring, batches: &[WriteBatch]) -> Result<Vec<WriteBatch>> {
        batches
            .iter()
            .map(|b| {
                let ops = b
                    .ops
                    .iter()
                    .map(|op| match op {
                        Op::Put { table, key, value } => Ok(Op::Put {
                            table: *table,
                            key: key.clone(),
                            value: self.seal_with(ring, *table, key, value)?,
                        }),
                        other => Ok(other.clone()),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(WriteBatch { ops })
            })
            .collect()
    }

    /// Re-seals up to [`REENCRYPT_CHUNK`] values of `table` from `start` that are under an
    /// older key, in one durable transaction; returns the key to continue from (`None`: the
    /// table is done) and how many values were re-sealed.
    pub fn reencrypt_step(&self, table: Table, start: &[u8]) -> Result<(Option<Vec<u8>>, usize)> {
        let ring = self.ring.read().unwrap();
        let active = ring.active;
        let mut changed = 0;
        let (_, next) = self
            .inner
            .rewrite(table, start, REENCRYPT_CHUNK, &mut |k, v| {
                if Self::key_id(v) == Some(active) {
                    return Ok(None);
                }
                let plain = self.open_with(&ring, table, k, v)?;
                changed += 1;
                Ok(Some(self.seal_with(&ring, table, k, &plain)?))
            })?;
        self.reencrypted
            .fetch_add(changed as u64, Ordering::Relaxed);
        Ok((next, changed))
    }

    /// Re-seals every value under an older key (a whole pass over every table), then retires
    /// the older keys. Blocking: run it off the async threads.
    pub fn reencrypt_all(&self) -> Result<usize> {
        let mut total = 0;
        for t in Table::ALL {
            let mut cursor = Vec::new();
            loop {
                let (next, n) = self.reencrypt_step(t, &cursor)?;
                total += n;
                match next {
                    Some(k) => {
                        debug_assert!(k > cursor, "a re-encryption cursor never goes back");
                        cursor = k;
                    }
                    None => break,
                }
            }
        }
        self.retire()?;
        Ok(total)
    }

    /// Drops every key but the active one from the keyring, after checking that no value is
    /// sealed under one of them (a pass of [`EncryptedEngine::reencrypt_all`] ran since the
    /// last rotation). Returns the keys retired.
    pub fn retire(&self) -> Result<Vec<u32>> {
        let mut ring = self.ring.write().unwrap();
        let active = ring.active;
        for t in Table::ALL {
            let mut cursor = Vec::new();
            loop {
                let rows = self.inner.scan(t, &cursor, &[0xff; 64], REENCRYPT_CHUNK)?;
                if let Some(stale) = rows.iter().find(|(_, v)| Self::key_id(v) != Some(active)) {
                    return Err(err(format!(
                        "a value in table {t:?} is still sealed under key {:?}: not retiring",
                        Self::key_id(&stale.1)
                    )));
                }
                match rows.last() {
                    Some((k, _)) if rows.len() == REENCRYPT_CHUNK => cursor = crate::successor(k),
                    _ => break,
                }
            }
        }
        let old: Vec<u32> = ring
            .keys
            .keys()
            .copied()
            .filter(|id| *id != active)
            .collect();
        if old.is_empty() {
            return Ok(old);
        }
        let kept: BTreeMap<u32, DataKey> = std::mem::take(&mut ring.keys)
            .into_iter()
            .filter(|(id, _)| *id == active)
            .collect();
        let dropped = std::mem::replace(&mut ring.keys, kept);
        if let Err(e) = self.persist(&ring) {
            ring.keys = dropped;
            return Err(e);
        }
        Ok(old)
    }
}

impl Engine for EncryptedEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.inner.get(table, key)? {
            Some(v) => {
                let ring = self.ring.read().unwrap();
                Ok(Some(self.open_with(&ring, table, key, &v)?))
            }
            None => Ok(None),
        }
    }

    fn scan(&self, table: Table, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Row>> {
        let rows = self.inner.scan(table, start, end, limit)?;
        self.open_rows(table, rows)
    }

    fn last(&self, table: Table, start: &[u8], end: &[u8]) -> Result<Option<Row>> {
        match self.inner.last(table, start, end)? {
            Some(row) => Ok(self.open_rows(table, vec![row])?.pop()),
            None => Ok(None),
        }
    }

    fn scan_consistent(&self, ranges: &[KeyRange]) -> Result<Vec<Vec<Row>>> {
        let all = self.inner.scan_consistent(ranges)?;
        all.into_iter()
            .zip(ranges)
            .map(|(rows, (t, _, _))| self.open_rows(*t, rows))
            .collect()
    }

    fn commit(&self, batches: &[WriteBatch]) -> Result<()> {
        // Held until the inner commit returns: see the module's invariant.
        let ring = self.ring.read().unwrap();
        let sealed = self.seal_batches(&ring, batches)?;
        self.inner.commit(&sealed)
    }

    fn commit_deferred(&self, batches: &[WriteBatch]) -> Result<()> {
        let ring = self.ring.read().unwrap();
        let sealed = self.seal_batches(&ring, batches)?;
        self.inner.commit_deferred(&sealed)
    }

    fn rewrite(
        &self,
        table: Table,
        start: &[u8],
        limit: usize,
        f: &mut crate::RewriteFn<'_>,
    ) -> Result<(usize, Option<Vec<u8>>)> {
        let ring = self.ring.read().unwrap();
        self.inner.rewrite(table, start, limit, &mut |k, v| {
            let plain = self.open_with(&ring, table, k, v)?;
            match f(k, &plain)? {
                Some(new) => Ok(Some(self.seal_with(&ring, table, k, &new)?)),
                None => Ok(None),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemEngine, RedbEngine};

    fn kek() -> Kek {
        Kek::parse(&Kek::generate_hex()).unwrap()
    }

    fn put(t: Table, k: &[u8], v: &[u8]) -> WriteBatch {
        let mut b = WriteBatch::default();
        b.put(t, k.to_vec(), v.to_vec());
        b
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    // Goal: values round-trip, the inner engine holds no plaintext, and a value moved to
    // another key, edited, or read with another KEK is refused.
    #[test]
    fn values_are_sealed_bound_to_their_row_and_kek() {
        let dir = tempfile::tempdir().unwrap();
        let inner: SharedEngine = Arc::new(MemEngine::new());
        let k = kek();
        let e = EncryptedEngine::open(inner.clone(), dir.path(), &k).unwrap();
        e.commit(&[
            put(Table::Data, b"a", b"canary-123"),
            put(Table::Log, b"l", b"entry"),
        ])
        .unwrap();
        assert_eq!(e.get(Table::Data, b"a").unwrap().unwrap(), b"canary-123");
        let raw = inner.get(Table::Data, b"a").unwrap().unwrap();
        assert!(!contains(&raw, b"canary"));
        assert_eq!(
            e.scan(Table::Log, b"", b"z", 10).unwrap(),
            vec![(b"l".to_vec(), b"entry".to_vec())]
        );
        // Moved to another key: the additional data no longer matches.
        inner.commit(&[put(Table::Data, b"b", &raw)]).unwrap();
        assert!(e.get(Table::Data, b"b").is_err());
        let mut edited = raw.clone();
        *edited.last_mut().unwrap() ^= 1;
        inner.commit(&[put(Table::Data, b"a", &edited)]).unwrap();
        assert!(e.get(Table::Data, b"a").is_err());
        // Another KEK does not open the keyring.
        let wrong = EncryptedEngine::open(inner.clone(), dir.path(), &kek())
            .err()
            .unwrap();
        assert!(wrong.to_string().contains("does not open"), "{wrong}");
        // Plaintext data without a keyring is refused.
        let plain: SharedEngine = Arc::new(MemEngine::new());
        plain.commit(&[put(Table::Data, b"x", b"y")]).unwrap();
        let other = tempfile::tempdir().unwrap();
        assert!(EncryptedEngine::open(plain, other.path(), &k).is_err());
    }

    // Goal: after a rotation new values use the new key at once, old ones stay readable, a
    // pass re-seals them all, and the old key is retired; the keyring survives a reopen.
    #[test]
    fn rotation_reencrypts_then_retires_the_old_key() {
        let dir = tempfile::tempdir().unwrap();
        let inner: SharedEngine = Arc::new(RedbEngine::open(&dir.path().join("db.redb")).unwrap());
        let k = kek();
        let e = EncryptedEngine::open(inner.clone(), dir.path(), &k).unwrap();
        let batch: Vec<WriteBatch> = (0..600u32)
            .map(|i| put(Table::Data, &i.to_be_bytes(), format!("v{i}").as_bytes()))
            .collect();
        e.commit(&batch).unwrap();
        assert_eq!(e.rotate().unwrap(), 2);
        e.commit(&[put(Table::Meta, b"m", b"new")]).unwrap();
        let raw = inner.get(Table::Meta, b"m").unwrap().unwrap();
        assert_eq!(EncryptedEngine::key_id(&raw), Some(2));
        assert_eq!(
            e.get(Table::Data, &7u32.to_be_bytes()).unwrap().unwrap(),
            b"v7"
        );
        assert!(e.retire().is_err(), "values remain under key 1");
        assert_eq!(e.status().keys, vec![1, 2]);
        assert_eq!(e.reencrypt_all().unwrap(), 600);
        assert_eq!(e.status().keys, vec![2]);
        for i in 0..600u32 {
            let raw = inner.get(Table::Data, &i.to_be_bytes()).unwrap().unwrap();
            assert_eq!(EncryptedEngine::key_id(&raw), Some(2));
        }
        drop(e);
        let again = EncryptedEngine::open(inner, dir.path(), &k).unwrap();
        assert_eq!(
            again
                .get(Table::Data, &599u32.to_be_bytes())
                .unwrap()
                .unwrap(),
            b"v599"
        );
        assert_eq!(again.status().active_key, 2);
    }
}
