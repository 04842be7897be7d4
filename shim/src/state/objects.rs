//! The in-memory index of records, one [`Entry`] per object. An entry pairs an
//! operation lock (held across a whole RPC that changes the object, so two
//! changes never interleave) with the last persisted record (read without
//! waiting for that lock, so listings never stall behind a slow stop).
//!
//! Next to each record sits its ready-made listing form ([`Listed`]), rebuilt
//! whenever the record changes: List* RPCs are polled constantly by kubelet.
//! For pods and containers that form is a [`Listing`]: the small CRI message,
//! which filters read, and its protobuf encoding, which a reply shares instead
//! of copying and re-encoding the message every time. Every change to the
//! index bumps its generation, so a whole reply can be kept ([`ReplyCache`])
//! until something changes: kubelet's relist asks for everything every second.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use berth_proto::encoded::Encoded;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};
use crate::store::Store;

/// The form a List* RPC returns for a record.
pub trait Listed {
    type Item: Clone;
    /// `None` hides the object from listings (e.g. while it is being created).
    fn listed(&self) -> Option<Self::Item>;
}

/// A listing form in both shapes: the message, which filters read, and its
/// protobuf encoding, which replies carry (cloning it shares the bytes).
#[derive(Clone, Debug)]
pub struct Listing<M> {
    pub msg: M,
    pub wire: Encoded<M>,
}

impl<M: prost::Message + Default> Listing<M> {
    /// Encodes `msg` once, for every reply to come.
    pub fn new(msg: M) -> Listing<M> {
        let wire = Encoded::new(&msg);
        Listing { msg, wire }
    }
}

/// A record and its listing form, always replaced together.
struct Current<R: Listed> {
    rec: R,
    listed: Option<R::Item>,
}

impl<R: Listed> Current<R> {
    fn new(rec: R) -> Current<R> {
        let listed = rec.listed();
        Current { rec, listed }
    }
}

/// One object: its operation lock and its current (persisted) record.
pub struct Entry<R: Listed> {
    op: tokio::sync::Mutex<()>,
    cur: RwLock<Current<R>>,
    /// The generation of the [`Objects`] holding this entry.
    generation: Arc<AtomicU64>,
}

// By hand: it holds handles (tasks, streams, callbacks, stores) with no useful
// Debug of their own.
impl<R: Listed> std::fmt::Debug for Entry<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").finish_non_exhaustive()
    }
}

/// Proof that the caller holds an entry's operation lock.
pub type OpGuard<'a> = tokio::sync::MutexGuard<'a, ()>;

impl<R: Clone + Serialize + Listed> Entry<R> {
    fn new(rec: R, generation: Arc<AtomicU64>) -> Entry<R> {
        Entry {
            op: tokio::sync::Mutex::new(()),
            cur: RwLock::new(Current::new(rec)),
            generation,
        }
    }

    /// A copy of the current record.
    pub fn get(&self) -> R {
        self.cur
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .rec
            .clone()
    }

    /// Waits for the operation lock.
    pub async fn lock(&self) -> OpGuard<'_> {
        self.op.lock().await
    }

    /// The operation lock if nobody holds it.
    pub fn try_lock(&self) -> Option<OpGuard<'_>> {
        self.op.try_lock().ok()
    }

    /// Applies `f` to a copy of the record, persists the copy, and only then makes
    /// it current: a failed write leaves memory and disk agreeing on the old one.
    pub fn update(
        &self,
        _held: &OpGuard<'_>,
        store: &Store,
        table: &str,
        id: &str,
        f: impl FnOnce(&mut R),
    ) -> Result<R> {
        let mut next = self.get();
        f(&mut next);
        store.put(table, id, &next)?;
        let cur = Current::new(next.clone());
        *self.cur.write().unwrap_or_else(|p| p.into_inner()) = cur;
        // After the write: whoever reads the new generation sees the new record.
        self.generation.fetch_add(1, Ordering::Release);
        Ok(next)
    }
}

/// All objects of one kind, by id.
pub struct Objects<R: Listed> {
    table: &'static str,
    kind: &'static str,
    map: RwLock<BTreeMap<String, Arc<Entry<R>>>>,
    /// Bumped after every insert, update and removal.
    generation: Arc<AtomicU64>,
}

// By hand: it holds handles (tasks, streams, callbacks, stores) with no useful
// Debug of their own.
impl<R: Listed> std::fmt::Debug for Objects<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects").finish_non_exhaustive()
    }
}

impl<R: Clone + Serialize + DeserializeOwned + Listed> Objects<R> {
    /// An empty index persisting into store table `table`; `kind` names the
    /// objects in messages ("pod sandbox", "container").
    pub fn new(table: &'static str, kind: &'static str) -> Objects<R> {
        Objects {
            table,
            kind,
            map: RwLock::new(BTreeMap::new()),
            generation: Arc::default(),
        }
    }

    /// Changes whenever an object is inserted, updated or removed. Read it
    /// before reading the objects: what is built from them then reflects at
    /// least that generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The store table.
    pub fn table(&self) -> &'static str {
        self.table
    }

    /// Persists a new record and indexes it.
    pub fn insert(&self, store: &Store, id: &str, rec: R) -> Result<Arc<Entry<R>>> {
        store.put(self.table, id, &rec)?;
        Ok(self.insert_loaded(id, rec))
    }

    /// Indexes a record that is already in the store (recovery).
    pub fn insert_loaded(&self, id: &str, rec: R) -> Arc<Entry<R>> {
        let e = Arc::new(Entry::new(rec, self.generation.clone()));
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), e.clone());
        self.generation.fetch_add(1, Ordering::Release);
        e
    }

    /// Deletes the record from the store, then from the index.
    pub fn remove(&self, store: &Store, id: &str) -> Result<()> {
        store.delete(self.table, id)?;
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The entry with exactly this id.
    pub fn get(&self, id: &str) -> Option<Arc<Entry<R>>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Finds an object by full id or unique id prefix (crictl and operators use
    /// short ids). `Ok(None)` when nothing matches.
    pub fn find(&self, id: &str) -> Result<Option<(String, Arc<Entry<R>>)>> {
        if id.is_empty() {
            return Ok(None);
        }
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get(id) {
            return Ok(Some((id.to_string(), e.clone())));
        }
        let mut hits = map
            .range(id.to_string()..)
            .take_while(|(k, _)| k.starts_with(id));
        let first = hits.next().map(|(k, e)| (k.clone(), e.clone()));
        if hits.next().is_some() {
            return Err(Error::InvalidArgument(format!(
                "{} id prefix {id:?} is ambiguous",
                self.kind
            )));
        }
        Ok(first)
    }

    /// Like [`Objects::find`], but a miss is `NOT_FOUND` naming the id.
    pub fn must_find(&self, id: &str) -> Result<(String, Arc<Entry<R>>)> {
        if id.is_empty() {
            // An empty id is a malformed request, not an object that is gone
            // (the request field is `container_id` or `pod_sandbox_id`).
            return Err(Error::InvalidArgument(format!(
                "{}_id: empty",
                self.kind.replace(' ', "_")
            )));
        }
        self.find(id)?
            .ok_or_else(|| Error::NotFound(format!("{} {id:?} not found", self.kind)))
    }

    /// Copies of every current record, in id order.
    pub fn records(&self) -> Vec<R> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|e| e.get())
            .collect()
    }

    /// Copies of the records that pass `keep`, in id order (only those are
    /// copied: per-pod work over all containers stays cheap).
    pub fn records_where(&self, keep: impl Fn(&R) -> bool) -> Vec<R> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for e in map.values() {
            let cur = e.cur.read().unwrap_or_else(|p| p.into_inner());
            if keep(&cur.rec) {
                out.push(cur.rec.clone());
            }
        }
        out
    }

    /// Every id, in order.
    pub fn ids(&self) -> Vec<String> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// `pick` applied to the listing form of every listed object, in id order,
    /// keeping the `Some`s: a reply takes just the part it sends.
    pub fn listed_filter_map<T>(&self, pick: impl Fn(&R::Item) -> Option<T>) -> Vec<T> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(map.len());
        for e in map.values() {
            let cur = e.cur.read().unwrap_or_else(|p| p.into_inner());
            if let Some(item) = cur.listed.as_ref().and_then(&pick) {
                out.push(item);
            }
        }
        out
    }

    /// Every `(id, entry)`, in id order.
    pub fn entries(&self) -> Vec<(String, Arc<Entry<R>>)> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect()
    }
}

/// The last reply built from every listed object of an [`Objects`], with the
#[derive(Debug)]
/// generation it was built at; served again until the generation moves on.
pub struct ReplyCache<T> {
    slot: Mutex<Option<(u64, T)>>,
}

impl<T> Default for ReplyCache<T> {
    fn default() -> Self {
        ReplyCache {
            slot: Mutex::new(None),
        }
    }
}

impl<T: Clone> ReplyCache<T> {
    /// The kept reply if it was built at `generation` (read from the objects
    /// before calling), else `build()`, kept for the next call.
    pub fn get_or_build(&self, generation: u64, build: impl FnOnce() -> T) -> T {
        let slot = || self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((g, reply)) = &*slot() {
            if *g == generation {
                return reply.clone();
            }
        }
        // Built without the lock: a concurrent change only means a later
        // generation, which the next call rebuilds.
        let reply = build();
        let mut kept = slot();
        // Generations only grow: never replace a newer reply with an older one.
        if kept.as_ref().is_none_or(|(g, _)| *g <= generation) {
            *kept = Some((generation, reply.clone()));
        }
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Odd numbers are listed as their decimal text, even ones are hidden.
    impl Listed for u32 {
        type Item = String;
        fn listed(&self) -> Option<String> {
            (self % 2 == 1).then(|| self.to_string())
        }
    }

    #[tokio::test]
    async fn the_listing_form_follows_every_update() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.redb")).unwrap();
        let objs: Objects<u32> = Objects::new("t", "thing");
        objs.insert(&store, "a", 1).unwrap();
        let b = objs.insert(&store, "b", 2).unwrap();
        objs.insert_loaded("c", 3);
        assert_eq!(objs.listed_filter_map(|s| Some(s.clone())), ["1", "3"]);
        assert_eq!(
            objs.listed_filter_map(|s| (s != "1").then(|| s.clone())),
            ["3"]
        );
        let g = b.lock().await;
        b.update(&g, &store, "t", "b", |v| *v = 5).unwrap();
        assert_eq!(objs.listed_filter_map(|s| Some(s.clone())), ["1", "5", "3"]);
        objs.remove(&store, "a").unwrap();
        assert_eq!(objs.listed_filter_map(|s| Some(s.clone())), ["5", "3"]);
        assert_eq!(objs.listed_filter_map(|s| s.parse::<u32>().ok()), [5, 3]);
        assert_eq!(objs.listed_filter_map(|s| (s == "3").then_some(30)), [30]);
        assert_eq!(objs.records_where(|v| *v > 3), [5]);
        assert_eq!(objs.ids(), ["b", "c"]);
    }

    #[tokio::test]
    async fn every_change_moves_the_generation_and_a_kept_reply_lives_until_then() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.redb")).unwrap();
        let objs: Objects<u32> = Objects::new("t", "thing");
        let cache = ReplyCache::default();
        let all = |objs: &Objects<u32>| objs.listed_filter_map(|s| Some(s.clone()));
        let reply = |objs: &Objects<u32>| cache.get_or_build(objs.generation(), || all(objs));

        let g0 = objs.generation();
        let a = objs.insert(&store, "a", 1).unwrap();
        let g1 = objs.generation();
        assert!(g1 > g0);
        assert_eq!(reply(&objs), ["1"]);
        // Kept: a build now would panic.
        assert_eq!(cache.get_or_build(g1, || unreachable!()), ["1"]);

        let g = a.lock().await;
        a.update(&g, &store, "t", "a", |v| *v = 3).unwrap();
        drop(g);
        let g2 = objs.generation();
        assert!(g2 > g1);
        assert_eq!(reply(&objs), ["3"]);
        objs.insert_loaded("b", 7);
        assert_eq!(reply(&objs), ["3", "7"]);
        objs.remove(&store, "a").unwrap();
        assert_eq!(reply(&objs), ["7"]);
        // A slow builder of an old generation does not replace the newer reply.
        let g3 = objs.generation();
        assert_eq!(cache.get_or_build(g1, || vec!["old".into()]), ["old"]);
        assert_eq!(cache.get_or_build(g3, || unreachable!()), ["7"]);
    }

    #[tokio::test]
    async fn update_persists_before_it_becomes_visible_and_find_takes_unique_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.redb")).unwrap();
        let objs: Objects<u32> = Objects::new("t", "thing");
        objs.insert(&store, "abc1", 1).unwrap();
        objs.insert(&store, "abd2", 2).unwrap();
        let (id, e) = objs.must_find("abc").unwrap();
        assert_eq!(id, "abc1");
        let g = e.lock().await;
        e.update(&g, &store, "t", "abc1", |v| *v = 7).unwrap();
        drop(g);
        assert_eq!(e.get(), 7);
        assert_eq!(store.get::<u32>("t", "abc1").unwrap(), Some(7));
        assert!(objs
            .find("ab")
            .is_err_and(|e| e.to_string().contains("ambiguous")));
        assert!(objs.find("zz").unwrap().is_none());
        assert!(objs.find("").unwrap().is_none());
        let Err(e) = objs.must_find("nope") else {
            panic!("unknown id found")
        };
        assert!(e.to_string().contains("thing \"nope\" not found"), "{e}");
        objs.remove(&store, "abc1").unwrap();
        assert!(objs.get("abc1").is_none());
        assert_eq!(store.get::<u32>("t", "abc1").unwrap(), None);
        assert_eq!(objs.records(), vec![2]);
    }
}
