//! The embedded store: the default [`NamingBackend`], kept in one database file (or in memory).
//!
//! # Why redb
//!
//! The store is [`redb`]: a maintained, pure-Rust embedded key-value database with ACID
//! transactions and crash safety, in a single file. It needs no C toolchain (SQLite through
//! `rusqlite` with its bundled build compiles C, and its sans-bundled build needs a system
//! library), so the default build of the library stays `cargo build` and nothing else. A
//! name server's data is a small map from name to (URI, tags): a key-value store fits it
//! exactly, and SQL would add nothing.
//!
//! Every registration is written to the file in its own committed transaction (durable
//! once `register` returns) and mirrored in memory, so lookups and lists never touch the
//! file. One process at a time may open a store file; a second gets a clear error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use redb::{ReadableTable, TableDefinition};

use super::{
    naming_error, unavailable, validate_name, validate_tags, validate_uri, CompiledFilter, Filter,
    NamingBackend, Registration,
};
use crate::Error;

/// name → encoded (uri, tags).
const NAMES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("names");

/// The version byte that starts every stored value.
const FORMAT: u8 = 1;

/// One stored name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    uri: String,
    metadata: BTreeSet<String>,
}

/// The embedded [`NamingBackend`]: a name server's registrations, persisted in a
/// [`redb`] database file, or kept in memory only ([`EmbeddedStore::in_memory`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), wirecall::Error> {
/// use wirecall::naming::{EmbeddedStore, NamingBackend, Registration};
/// let store = EmbeddedStore::in_memory()?;
/// store.register(Registration::new("example.greeting", "tcp://127.0.0.1:4000"), false).await?;
/// assert_eq!(store.lookup("example.greeting").await?[0].uri, "tcp://127.0.0.1:4000");
/// # Ok(()) }
/// ```
pub struct EmbeddedStore {
    db: Arc<redb::Database>,
    path: Option<PathBuf>,
    /// The file's content, read at open and kept equal to it by every write.
    names: RwLock<BTreeMap<String, Entry>>,
    /// Writes one at a time, so the file and the mirror change in the same order.
    writing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .field("names", &read(&self.names).len())
            .finish()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// A store error: the file could not be read or written.
fn store_error(path: &Option<PathBuf>, what: &str, e: impl std::fmt::Display) -> Error {
    let place = match path {
        Some(p) => format!("the name store {}", p.display()),
        None => "the in-memory name store".to_string(),
    };
    unavailable(
        place.clone(),
        format!("{what} failed in {place}: {e} (check the file's permissions and free disk space)"),
    )
}

impl EmbeddedStore {
    /// Opens (or creates) the store file at `path` and reads its registrations.
    ///
    /// Fails with [`Error::Naming`] when the file cannot be created or read, is not a name
    /// store, or is already open (in this process or another: one name server per file).
    pub fn open(path: impl AsRef<Path>) -> Result<EmbeddedStore, Error> {
        let path = path.as_ref().to_path_buf();
        let db = redb::Database::create(&path).map_err(|e| {
            let hint = match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    " (another name server has it open: stop it or use another file)"
                }
                _ => "",
            };
            naming_error(
                path.display().to_string(),
                format!("cannot open the name store {}: {e}{hint}", path.display()),
            )
        })?;
        Self::from_db(db, Some(path))
    }

    /// A store in memory only: its registrations are gone when it is dropped.
    pub fn in_memory() -> Result<EmbeddedStore, Error> {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| store_error(&None, "creating the store", e))?;
        Self::from_db(db, None)
    }

    /// The store file, or `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn from_db(db: redb::Database, path: Option<PathBuf>) -> Result<EmbeddedStore, Error> {
        let mut names = BTreeMap::new();
        {
            let txn = db
                .begin_write()
                .map_err(|e| store_error(&path, "opening a transaction", e))?;
            // Creates the table in a new file.
            txn.open_table(NAMES)
                .map_err(|e| store_error(&path, "opening the names table", e))?;
            txn.commit()
                .map_err(|e| store_error(&path, "creating the names table", e))?;
            let txn = db
                .begin_read()
                .map_err(|e| store_error(&path, "opening a transaction", e))?;
            let table = txn
                .open_table(NAMES)
                .map_err(|e| store_error(&path, "opening the names table", e))?;
            for row in table
                .iter()
                .map_err(|e| store_error(&path, "reading the names", e))?
            {
                let (k, v) = row.map_err(|e| store_error(&path, "reading the names", e))?;
                let name = k.value().to_string();
                let entry = decode_entry(v.value()).ok_or_else(|| {
                    naming_error(
                        name.clone(),
                        format!(
                            "the stored registration of `{name}` is not in the name store's format (is {} a wirecall name store?)",
                            path.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
                        ),
                    )
                })?;
                names.insert(name, entry);
            }
        }
        Ok(EmbeddedStore {
            db: Arc::new(db),
            path,
            names: RwLock::new(names),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// Writes `puts` and deletes `deletes` in one committed transaction (off the async
    /// threads: a commit waits for the disk).
    async fn commit(&self, puts: Vec<(String, Entry)>, deletes: Vec<String>) -> Result<(), Error> {
        let db = self.db.clone();
        let path = self.path.clone();
        let work = move || -> Result<(), Error> {
            let txn = db
                .begin_write()
                .map_err(|e| store_error(&path, "opening a transaction", e))?;
            {
                let mut table = txn
                    .open_table(NAMES)
                    .map_err(|e| store_error(&path, "opening the names table", e))?;
                for (name, entry) in &puts {
                    table
                        .insert(name.as_str(), encode_entry(entry).as_slice())
                        .map_err(|e| store_error(&path, "writing a name", e))?;
                }
                for name in &deletes {
                    table
                        .remove(name.as_str())
                        .map_err(|e| store_error(&path, "removing a name", e))?;
                }
            }
            txn.commit()
                .map_err(|e| store_error(&path, "committing", e))
        };
        match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::spawn_blocking(work)
                .await
                .map_err(|e| store_error(&self.path, "the store's writer", e))?,
            Err(_) => work(),
        }
    }

    fn matching(&self, filter: &CompiledFilter) -> Vec<Registration> {
        read(&self.names)
            .iter()
            .filter(|(name, e)| filter.matches(name, &e.metadata))
            .map(|(name, e)| Registration {
                name: name.clone(),
                uri: e.uri.clone(),
                metadata: e.metadata.clone(),
            })
            .collect()
    }
}

impl NamingBackend for EmbeddedStore {
    fn register(&self, reg: Registration, safe: bool) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            validate_name(&reg.name)?;
            validate_uri(&reg.name, &reg.uri)?;
            validate_tags(&reg.name, &reg.metadata)?;
            let _w = self.writing.lock().await;
            if safe && read(&self.names).contains_key(&reg.name) {
                return Err(naming_error(
                    reg.name.clone(),
                    format!("name already registered: {}", reg.name),
                ));
            }
            let entry = Entry {
                uri: reg.uri,
                metadata: reg.metadata,
            };
            self.commit(vec![(reg.name.clone(), entry.clone())], Vec::new())
                .await?;
            write(&self.names).insert(reg.name, entry);
            Ok(())
        })
    }

    fn lookup<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<Registration>, Error>> {
        Box::pin(async move {
            validate_name(name)?;
            match read(&self.names).get(name) {
                Some(e) => Ok(vec![Registration {
                    name: name.to_string(),
                    uri: e.uri.clone(),
                    metadata: e.metadata.clone(),
                }]),
                None => Err(naming_error(name, format!("unknown name: {name}"))),
            }
        })
    }

    fn list<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Result<Vec<Registration>, Error>> {
        Box::pin(async move {
            let filter = filter.compile()?;
            Ok(self.matching(&filter))
        })
    }

    fn remove<'a>(
        &'a self,
        filter: &'a Filter,
        uri: Option<&'a str>,
    ) -> BoxFuture<'a, Result<usize, Error>> {
        Box::pin(async move {
            let filter = filter.compile()?;
            let _w = self.writing.lock().await;
            let gone: Vec<String> = self
                .matching(&filter)
                .into_iter()
                .filter(|r| uri.is_none_or(|u| r.uri == u))
                .map(|r| r.name)
                .collect();
            if gone.is_empty() {
                return Ok(0);
            }
            self.commit(Vec::new(), gone.clone()).await?;
            let mut names = write(&self.names);
            for n in &gone {
                names.remove(n);
            }
            Ok(gone.len())
        })
    }

    fn set_metadata<'a>(
        &'a self,
        name: &'a str,
        metadata: BTreeSet<String>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            validate_name(name)?;
            validate_tags(name, &metadata)?;
            let _w = self.writing.lock().await;
            let Some(mut entry) = read(&self.names).get(name).cloned() else {
                return Err(naming_error(name, format!("unknown name: {name}")));
            };
            entry.metadata = metadata;
            self.commit(vec![(name.to_string(), entry.clone())], Vec::new())
                .await?;
            write(&self.names).insert(name.to_string(), entry);
            Ok(())
        })
    }

    fn count(&self) -> BoxFuture<'_, Result<usize, Error>> {
        Box::pin(async move { Ok(read(&self.names).len()) })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { Ok(()) })
    }
}

/// `FORMAT`, then the URI and each tag as a u32 length (big endian) and UTF-8 bytes, the
/// tags preceded by their count.
fn encode_entry(e: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + e.uri.len() + 16 * e.metadata.len());
    out.push(FORMAT);
    let put = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    put(&mut out, &e.uri);
    out.extend_from_slice(&(e.metadata.len() as u32).to_be_bytes());
    for t in &e.metadata {
        put(&mut out, t);
    }
    out
}

/// Reads what [`encode_entry`] wrote; `None` for anything else (lengths are checked
/// against what is there before anything is allocated).
fn decode_entry(bytes: &[u8]) -> Option<Entry> {
    let (&format, mut rest) = bytes.split_first()?;
    if format != FORMAT {
        return None;
    }
    fn u32_at(rest: &mut &[u8]) -> Option<usize> {
        let (n, r) = rest.split_first_chunk::<4>()?;
        *rest = r;
        Some(u32::from_be_bytes(*n) as usize)
    }
    fn string(rest: &mut &[u8]) -> Option<String> {
        let n = u32_at(rest)?;
        if n > rest.len() {
            return None;
        }
        let (s, r) = rest.split_at(n);
        *rest = r;
        String::from_utf8(s.to_vec()).ok()
    }
    let uri = string(&mut rest)?;
    let count = u32_at(&mut rest)?;
    // Each tag takes at least its 4-byte length.
    if count > rest.len() / 4 {
        return None;
    }
    let mut metadata = BTreeSet::new();
    for _ in 0..count {
        metadata.insert(string(&mut rest)?);
    }
    rest.is_empty().then_some(Entry { uri, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_garbage_is_refused() {
        let e = Entry {
            uri: "tcp://127.0.0.1:1".into(),
            metadata: ["a".to_string(), "bé".to_string()].into(),
        };
        let b = encode_entry(&e);
        assert_eq!(decode_entry(&b), Some(e));
        for cut in 0..b.len() {
            assert_eq!(decode_entry(&b[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decode_entry(&[FORMAT, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(decode_entry(&[2]), None);
        let mut long = b.clone();
        long.push(0);
        assert_eq!(decode_entry(&long), None);
    }
}
