//! The session index: a flow key's hash → `slot << 1 | side`, in 64-byte buckets, so that a
//! lookup reads one cache line of index before the session's own lines, and a batch of lookups
//! can fetch those lines ahead of use ([`FlowIndex::prefetch`]).
//!
//! A bucket holds seven entries, each a 32-bit tag (the hash's high half, never 0; 0 marks a
//! free entry) and a 32-bit value. A key lives in its home bucket (the hash's low bits) or, when
//! that is full, in the next bucket with room; every bucket a key was pushed past counts it in
//! its `overflow` (folly F14's "outbound overflow count"), so a search stops at the first bucket
//! whose count is zero and removal needs no tombstones. The table keeps at most 80% of its
//! entries in use, so nearly every search reads one bucket.

const WAYS: usize = 7;

#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    tags: [u32; WAYS],
    /// Entries stored beyond this bucket whose home is this bucket or one before it.
    overflow: u32,
    values: [u32; WAYS],
    _pad: u32,
}

const _: () = assert!(size_of::<Bucket>() == 64);

/// See the module docs. Values are opaque; the caller checks that a value found under a hash is
/// the key it wants (tags can collide).
#[derive(Default)]
pub(super) struct FlowIndex {
    buckets: Vec<Bucket>,
    len: usize,
}

impl core::fmt::Debug for FlowIndex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlowIndex")
            .field("buckets", &self.buckets.len())
            .field("len", &self.len)
            .finish()
    }
}

#[inline]
fn tag(hash: u64) -> u32 {
    ((hash >> 32) as u32) | 1
}

/// Buckets for `entries` at no more than 80% of the entries in use (a power of two, at least 2).
fn buckets_for(entries: usize) -> usize {
    entries
        .saturating_mul(10)
        .div_ceil(WAYS * 8)
        .max(2)
        .next_power_of_two()
}

/// Starts fetching the cache line at `p` into every level of cache. A hint only: it never
/// faults, whatever the address.
#[inline(always)]
pub(super) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 does not access memory architecturally: it cannot fault and has no
    // effect on program state, for any address. The intrinsic is `unsafe` only as all of
    // `core::arch` is; SSE is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// An empty vector with room for `capacity` items whose memory the kernel is asked to back with
/// transparent huge pages (2 MiB) before anything touches it: at a million sessions the slots
/// span 200 MB, and with 4 KiB pages nearly every lookup would miss the TLB as well as the
/// caches. Only a hint (`MADV_HUGEPAGE`, for `madvise` mode THP); small vectors are left alone.
pub(super) fn with_huge_pages<T>(capacity: usize) -> Vec<T> {
    let v = Vec::with_capacity(capacity);
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = v.as_ptr() as usize;
        let end = start.saturating_add(v.capacity().saturating_mul(size_of::<T>()));
        let first = start.next_multiple_of(HUGE);
        if end > first + HUGE {
            let len = (end - first) & !(HUGE - 1);
            // SAFETY: the range lies inside this vector's own allocation (whole huge pages
            // within it, nothing touched yet), and MADV_HUGEPAGE changes only how the kernel
            // backs those pages, never their contents or the mapping's permissions.
            unsafe {
                libc::madvise(first as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
            }
        }
    }
    v
}

impl FlowIndex {
    pub(super) fn allocation_size(&self) -> usize {
        self.buckets.capacity() * size_of::<Bucket>()
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        // `buckets.len()` is a power of two (or 0, when nothing calls this).
        hash as usize & self.buckets.len().wrapping_sub(1)
    }

    /// Starts fetching the bucket `hash` lives in.
    #[inline]
    pub(super) fn prefetch(&self, hash: u64) {
        if let Some(b) = self.buckets.get(self.home(hash)) {
            prefetch(b);
        }
    }

    /// The first value in `hash`'s home bucket whose tag matches, unchecked: what to prefetch
    /// next. Reads the bucket (best after [`FlowIndex::prefetch`]).
    #[inline]
    pub(super) fn candidate(&self, hash: u64) -> Option<u32> {
        let b = self.buckets.get(self.home(hash))?;
        let t = tag(hash);
        (0..WAYS).find(|&w| b.tags[w] == t).map(|w| b.values[w])
    }

    /// The first value stored under `hash` for which `eq` holds.
    #[inline]
    pub(super) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let n = self.buckets.len();
        let t = tag(hash);
        let mut i = self.home(hash);
        for _ in 0..n {
            let b = self.buckets.get(i)?;
            for w in 0..WAYS {
                if b.tags[w] == t && eq(b.values[w]) {
                    return Some(b.values[w]);
                }
            }
            if b.overflow == 0 {
                return None;
            }
            i = (i + 1) & (n - 1);
        }
        None
    }

    /// Adds `value` under `hash` (the caller ensures it is not there yet). `rehash` gives the
    /// hash of a stored value, for growing.
    pub(super) fn insert(&mut self, hash: u64, value: u32, rehash: impl Fn(u32) -> u64) {
        if buckets_for(self.len + 1) > self.buckets.len() {
            self.resize(
                buckets_for(self.len + 1).max(self.buckets.len() * 2),
                rehash,
            );
        }
        self.insert_with_room(hash, value);
    }

    /// Sizes the index for `entries` in all.
    pub(super) fn reserve(&mut self, entries: usize, rehash: impl Fn(u32) -> u64) {
        if buckets_for(entries) > self.buckets.len() {
            self.resize(buckets_for(entries), rehash);
        }
    }

    fn insert_with_room(&mut self, hash: u64, value: u32) {
        let n = self.buckets.len();
        let t = tag(hash);
        let mut i = self.home(hash);
        // At most 80% of entries are in use, so a free one exists and the loop ends.
        for _ in 0..n {
            let Some(b) = self.buckets.get_mut(i) else {
                return;
            };
            if let Some(w) = b.tags.iter().position(|&x| x == 0) {
                b.tags[w] = t;
                b.values[w] = value;
                self.len += 1;
                return;
            }
            b.overflow += 1;
            i = (i + 1) & (n - 1);
        }
    }

    /// Removes `value` stored under `hash`. Returns whether it was there.
    pub(super) fn remove(&mut self, hash: u64, value: u32) -> bool {
        let n = self.buckets.len();
        let t = tag(hash);
        let home = self.home(hash);
        let mut i = home;
        for _ in 0..n {
            let Some(b) = self.buckets.get_mut(i) else {
                return false;
            };
            if let Some(w) = (0..WAYS).find(|&w| b.tags[w] == t && b.values[w] == value) {
                b.tags[w] = 0;
                self.len -= 1;
                // Every bucket from home up to (not including) this one counted the entry.
                let mut j = home;
                while j != i {
                    if let Some(b) = self.buckets.get_mut(j) {
                        b.overflow = b.overflow.saturating_sub(1);
                    }
                    j = (j + 1) & (n - 1);
                }
                return true;
            }
            if b.overflow == 0 {
                return false;
            }
            i = (i + 1) & (n - 1);
        }
        false
    }

    fn resize(&mut self, buckets: usize, rehash: impl Fn(u32) -> u64) {
        let mut fresh = with_huge_pages(buckets);
        fresh.resize(buckets, Bucket::default());
        let old = std::mem::replace(&mut self.buckets, fresh);
        self.len = 0;
        for b in &old {
            for w in 0..WAYS {
                if b.tags[w] != 0 {
                    self.insert_with_room(rehash(b.values[w]), b.values[w]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A deliberately poor hash: many values share a home bucket, so overflow chains form.
    fn crowded(v: u32) -> u64 {
        (u64::from(v) << 32) | u64::from(v % 3)
    }

    #[test]
    fn overflowing_buckets_are_found_and_removed_exactly() {
        let mut index = FlowIndex::default();
        for v in 0..200u32 {
            index.insert(crowded(v), v, crowded);
        }
        assert_eq!(index.len, 200);
        for v in 0..200u32 {
            assert_eq!(index.find(crowded(v), |x| x == v), Some(v), "value {v}");
        }
        for v in (0..200u32).step_by(2) {
            assert!(index.remove(crowded(v), v));
            assert!(!index.remove(crowded(v), v));
        }
        for v in 0..200u32 {
            let found = index.find(crowded(v), |x| x == v);
            assert_eq!(found, (v % 2 == 1).then_some(v), "value {v}");
        }
        // With every entry gone, no bucket still counts an overflow.
        for v in (1..200u32).step_by(2) {
            assert!(index.remove(crowded(v), v));
        }
        assert!(index.buckets.iter().all(|b| b.overflow == 0));
        assert_eq!(index.len, 0);
    }

    #[test]
    fn matches_a_map_under_random_inserts_and_removes() {
        let mut index = FlowIndex::default();
        let mut model = HashMap::new();
        let mut x = 0x1234_5678_u64;
        let hash = |v: u32| (u64::from(v).wrapping_mul(0x9e37_79b9_7f4a_7c15)) ^ 0x55;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (x % 3_000) as u32;
            if model.remove(&v).is_some() {
                assert!(index.remove(hash(v), v));
            } else {
                index.insert(hash(v), v, hash);
                model.insert(v, ());
            }
        }
        assert_eq!(index.len, model.len());
        for v in 0..3_000u32 {
            assert_eq!(
                index.find(hash(v), |x| x == v).is_some(),
                model.contains_key(&v)
            );
        }
        index.reserve(100_000, hash);
        assert_eq!(index.len, model.len());
        assert!(
            model
                .keys()
                .all(|&v| index.find(hash(v), |x| x == v).is_some())
        );
    }
}
