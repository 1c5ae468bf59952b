//! Two-stage retrieval for matrix-factorization scoring: a bounded candidate set per request,
//! re-ranked exactly.
//!
//! Scoring every item for every request costs `items × factors` multiply-adds and streams the
//! whole item-factor matrix from memory. Instead, training precomputes for each user the
//! `per_user` items with the highest `yᵢᵀuᵤ` ([`CandidateLists`], one blocked matrix product over
//! all users, off the request path), and the request path scores only the union of that list
//! with live candidates (co-visitation, popular, trending) using [`rerank`]. [`rerank`] ranks
//! exactly like the exhaustive [`exhaustive_top`]: whenever the exhaustive top-k lie inside the
//! candidate set, both return the same list.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::Range;

use nalgebra::{DMatrix, DMatrixView};

use crate::ItemIndex;
use crate::als::{AlsModel, dot};

/// Users per block of the training-time product (their scores for one item block, 512 KiB, stay
/// in L2; the block's item factors are packed once per block of users).
const USER_BLOCK: usize = 64;
/// Items per block of the training-time product.
const ITEM_BLOCK: usize = 2_048;

/// Each user's best `per_user` items by `yᵢᵀuᵤ`, best first (ties by lower index), stored as one
/// flat array: `users × per_user` item indices (`u32`), plus nothing else.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CandidateLists {
    per_user: usize,
    users: usize,
    items: Vec<ItemIndex>,
}

impl CandidateLists {
    /// Computes the lists with a blocked product `U Yᵀ` over all users (`threads` threads over
    /// disjoint user ranges). The result does not depend on `threads`.
    pub fn build(model: &AlsModel, per_user: usize, threads: usize) -> CandidateLists {
        let per_user = per_user.min(model.items());
        let users = model.users();
        let mut items = vec![0 as ItemIndex; users * per_user];
        if per_user == 0 || users == 0 {
            return CandidateLists {
                per_user,
                users,
                items,
            };
        }
        let threads = threads.clamp(1, users.div_ceil(USER_BLOCK));
        let users_per_thread = users.div_ceil(threads);
        std::thread::scope(|scope| {
            let mut rest = items.as_mut_slice();
            let mut start = 0;
            while start < users {
                let end = (start + users_per_thread).min(users);
                let (chunk, tail) = rest.split_at_mut((end - start) * per_user);
                rest = tail;
                scope.spawn(move || best_items_of_users(model, start..end, per_user, chunk));
                start = end;
            }
        });
        CandidateLists {
            per_user,
            users,
            items,
        }
    }

    /// Items kept per user.
    pub fn per_user(&self) -> usize {
        self.per_user
    }

    pub fn users(&self) -> usize {
        self.users
    }

    /// `user`'s candidates, best first (empty for a user the lists do not cover).
    pub fn of(&self, user: usize) -> &[ItemIndex] {
        if user >= self.users {
            return &[];
        }
        &self.items[user * self.per_user..(user + 1) * self.per_user]
    }

    /// Heap bytes the lists hold.
    pub fn bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<ItemIndex>()
    }
}

/// Fills `out` (`users.len() × per_user`) with each user's best items: per block of users and
/// block of items one `gemm` (nalgebra hands it to `matrixmultiply`, whose kernels pick
/// AVX2/FMA at run time) writes each user's scores contiguously, and each user's
/// [`Selection`] takes them in ascending item order.
fn best_items_of_users(
    model: &AlsModel,
    users: Range<usize>,
    per_user: usize,
    out: &mut [ItemIndex],
) {
    let k = model.factors();
    let item_count = model.items();
    // nalgebra hands a product to `matrixmultiply` only when every dimension exceeds 5, so
    // every product here is made that large: zero factors appended (they add exact zeros),
    // whole user blocks (zero users past the end), at least `MIN_DIM` items. Every score is
    // then computed by the same kernel whatever the block or thread it falls in.
    const MIN_DIM: usize = 6;
    let width = k.max(MIN_DIM);
    let padded = |factors: &[f32]| -> Vec<f32> {
        let mut out = vec![0f32; factors.len() / k * width];
        for (row, values) in out.chunks_exact_mut(width).zip(factors.chunks_exact(k)) {
            row[..k].copy_from_slice(values);
        }
        out
    };
    let item_factors: std::borrow::Cow<'_, [f32]> = if width == k {
        model.item_factors().into()
    } else {
        padded(model.item_factors()).into()
    };
    let user_factors = model.user_factors();
    let mut user_block = vec![0f32; USER_BLOCK * width];
    let mut short_item_block = vec![0f32; MIN_DIM * width];
    // Column u: user u's scores for the current item block.
    let mut scores = DMatrix::<f32>::zeros(ITEM_BLOCK.max(MIN_DIM), USER_BLOCK);
    let mut block_start = users.start;
    while block_start < users.end {
        let block_end = (block_start + USER_BLOCK).min(users.end);
        let block_users = block_end - block_start;
        user_block.fill(0.0);
        for (row, values) in user_block
            .chunks_exact_mut(width)
            .zip(user_factors[block_start * k..block_end * k].chunks_exact(k))
        {
            row[..k].copy_from_slice(values);
        }
        // Row-major `rows × width` factors are a column-major `width × rows` matrix.
        let user_view = DMatrixView::from_slice(&user_block, width, USER_BLOCK);
        let mut selections: Vec<Selection> =
            (0..block_users).map(|_| Selection::new(per_user)).collect();
        let mut item_start = 0;
        while item_start < item_count {
            let item_end = (item_start + ITEM_BLOCK).min(item_count);
            let block_items = item_end - item_start;
            let mut factors = &item_factors[item_start * width..item_end * width];
            if block_items < MIN_DIM {
                short_item_block.fill(0.0);
                short_item_block[..factors.len()].copy_from_slice(factors);
                factors = &short_item_block;
            }
            let rows = block_items.max(MIN_DIM);
            // The same factors read as the `rows × width` matrix Y (row stride `width`).
            let item_view = DMatrixView::from_slice_with_strides(factors, rows, width, width, 1);
            scores
                .view_mut((0, 0), (rows, USER_BLOCK))
                .gemm(1.0, &item_view, &user_view, 0.0);
            let stride = scores.nrows();
            for (user, selection) in selections.iter_mut().enumerate() {
                let column = &scores.as_slice()[user * stride..][..block_items];
                selection.offer_ascending(item_start as ItemIndex, column);
            }
            item_start = item_end;
        }
        for (user, selection) in selections.into_iter().enumerate() {
            let row = block_start - users.start + user;
            let slot = &mut out[row * per_user..(row + 1) * per_user];
            let best = selection.into_sorted();
            // NaN scores are never kept; such users get fewer real candidates, padded with
            // their last one (duplicates are harmless to a candidate set).
            for (position, target) in slot.iter_mut().enumerate() {
                *target = best
                    .get(position)
                    .or(best.last())
                    .map_or(0, |(item, _)| *item);
            }
        }
        block_start = block_end;
    }
}

/// Higher score first, ties by lower item index.
fn best_first(a: &(ItemIndex, f32), b: &(ItemIndex, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The `count` best `(item, score)` of items offered in ascending index order (NaN ignored),
/// cheaper than a heap when most offers lose: candidates above a threshold collect in a
/// buffer; when it holds `2 × count`, a linear-time selection keeps the best `count` and the
/// threshold rises to the worst of them. Because items arrive in ascending order, a later item
/// tying the threshold ranks below every kept item at that score, so `>` is exact.
struct Selection {
    count: usize,
    threshold: f32,
    /// Whether `kept` has been cut to `count` at least once (`threshold` is valid).
    full: bool,
    kept: Vec<(ItemIndex, f32)>,
}

impl Selection {
    fn new(count: usize) -> Selection {
        Selection {
            count,
            threshold: f32::NEG_INFINITY,
            full: false,
            kept: Vec::with_capacity(2 * count),
        }
    }

    fn push(&mut self, item: ItemIndex, score: f32) {
        // `+ 0.0` turns −0 into +0, as `dot` (which sums from +0) does: the total order of
        // the final sort must not tell them apart.
        self.kept.push((item, score + 0.0));
        if self.kept.len() >= 2 * self.count {
            self.kept.select_nth_unstable_by(self.count - 1, best_first);
            self.kept.truncate(self.count);
            self.threshold = self.kept[self.count - 1].1;
            self.full = true;
        }
    }

    /// Offers `scores[j]` for item `first + j`; `first` is above every earlier offered item.
    fn offer_ascending(&mut self, first: ItemIndex, scores: &[f32]) {
        if self.count == 0 {
            return;
        }
        let mut offset = 0;
        while !self.full && offset < scores.len() {
            let score = scores[offset];
            if !score.is_nan() {
                self.push(first + offset as ItemIndex, score);
            }
            offset += 1;
        }
        // Once full, a chunk of scores is looked at one by one only if one beats the
        // threshold (NaN never does); the check itself vectorizes.
        const CHUNK: usize = 8;
        let mut chunks = scores[offset..].chunks_exact(CHUNK);
        let mut item = first + offset as ItemIndex;
        for chunk in &mut chunks {
            let threshold = self.threshold;
            if chunk
                .iter()
                .fold(false, |any, score| any | (*score > threshold))
            {
                for (lane, score) in chunk.iter().enumerate() {
                    if *score > self.threshold {
                        self.push(item + lane as ItemIndex, *score);
                    }
                }
            }
            item += CHUNK as ItemIndex;
        }
        for (lane, score) in chunks.remainder().iter().enumerate() {
            if *score > self.threshold {
                self.push(item + lane as ItemIndex, *score);
            }
        }
    }

    /// The kept entries, best first.
    fn into_sorted(mut self) -> Vec<(ItemIndex, f32)> {
        self.kept.sort_unstable_by(best_first);
        self.kept.truncate(self.count);
        self.kept
    }
}

/// A bounded selection of the `count` best `(item, score)`: higher score first, ties by lower
/// item index; NaN scores are ignored.
pub struct TopK {
    count: usize,
    heap: BinaryHeap<Entry>,
}

#[derive(PartialEq)]
struct Entry(f32, ItemIndex);

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed: the heap's top is the worst kept entry (lowest score, then highest index).
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

impl TopK {
    pub fn new(count: usize) -> TopK {
        TopK {
            count,
            heap: BinaryHeap::with_capacity(count + 1),
        }
    }

    /// Whether `(item, score)` would be kept now (cheap; lets callers skip costlier checks).
    pub fn would_keep(&self, item: ItemIndex, score: f32) -> bool {
        if self.count == 0 || score.is_nan() {
            return false;
        }
        if self.heap.len() < self.count {
            return true;
        }
        match self.heap.peek() {
            Some(worst) => score > worst.0 || (score == worst.0 && item < worst.1),
            None => true,
        }
    }

    pub fn offer(&mut self, item: ItemIndex, score: f32) {
        if !self.would_keep(item, score) {
            return;
        }
        self.heap.push(Entry(score, item));
        if self.heap.len() > self.count {
            self.heap.pop();
        }
    }

    /// The kept entries, best first.
    pub fn into_sorted(self) -> Vec<(ItemIndex, f32)> {
        let mut out: Vec<(ItemIndex, f32)> =
            self.heap.into_iter().map(|Entry(s, i)| (i, s)).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }
}

/// The `count` best `(item, yᵢᵀu)` over every item that `skip` does not reject, best first
/// (ties by lower index): one pass over the item factors with a bounded heap. `skip` runs only
/// for items that would make the list.
pub fn exhaustive_top(
    model: &AlsModel,
    user_vector: &[f32],
    count: usize,
    skip: impl Fn(ItemIndex) -> bool,
) -> Vec<(ItemIndex, f32)> {
    let mut top = TopK::new(count);
    if count == 0 {
        return Vec::new();
    }
    for (item, vector) in model
        .item_factors()
        .chunks_exact(model.factors())
        .enumerate()
    {
        let item = item as ItemIndex;
        let score = dot(vector, user_vector);
        if top.would_keep(item, score) && !skip(item) {
            top.offer(item, score);
        }
    }
    top.into_sorted()
}

/// Exact re-ranking of a candidate set: the `count` best `(item, yᵢᵀu)` among `candidates`
/// (duplicates and indices outside the model are ignored) that `skip` does not reject, ordered
/// like [`exhaustive_top`].
pub fn rerank(
    model: &AlsModel,
    user_vector: &[f32],
    mut candidates: Vec<ItemIndex>,
    count: usize,
    skip: impl Fn(ItemIndex) -> bool,
) -> Vec<(ItemIndex, f32)> {
    if count == 0 {
        return Vec::new();
    }
    // Ascending order makes the pass deterministic and reads the factors front to back.
    candidates.sort_unstable();
    candidates.dedup();
    rerank_sorted(model, user_vector, &candidates, count, skip)
}

/// [`rerank`] of candidates already in ascending order without duplicates (no copy, no sort).
pub fn rerank_sorted(
    model: &AlsModel,
    user_vector: &[f32],
    candidates: &[ItemIndex],
    count: usize,
    skip: impl Fn(ItemIndex) -> bool,
) -> Vec<(ItemIndex, f32)> {
    debug_assert!(candidates.windows(2).all(|pair| pair[0] < pair[1]));
    if count == 0 {
        return Vec::new();
    }
    let mut top = TopK::new(count);
    for &item in candidates {
        if item as usize >= model.items() {
            break;
        }
        let score = dot(model.item_vector(item), user_vector);
        if top.would_keep(item, score) && !skip(item) {
            top.offer(item, score);
        }
    }
    top.into_sorted()
}
