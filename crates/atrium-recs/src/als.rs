//! Implicit-feedback matrix factorization by alternating least squares (Hu, Koren & Volinsky
//! 2008), with the conjugate-gradient solve of Takács, Pilászy & Tikk (2011) that `implicit`
//! uses, or exact Cholesky solves.
//!
//! Objective: `Σ_{u,i} c_ui (p_ui − x_uᵀ y_i)² + λ (Σ‖x_u‖² + Σ‖y_i‖²)` with preference
//! `p_ui = 1` where the user interacted and confidence `c_ui = 1 + α r_ui` (`c_ui = 1` elsewhere).
//! The confidence formula is the paper's; `implicit` uses `c_ui = α r_ui`, so feeding `implicit`
//! the values `1 + α r` with its `alpha = 1` trains the identical objective.

use std::ops::Range;

use nalgebra::{DMatrix, DMatrixView, DMatrixViewMut, DVector};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ItemIndex;
use crate::csr::Csr;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Solver {
    /// A few warm-started CG steps per row and sweep (`implicit`'s default is 3).
    ConjugateGradient { steps: usize },
    /// Exact solve of each row's normal equations.
    Cholesky,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AlsConfig {
    pub factors: usize,
    pub iterations: usize,
    /// λ in the objective.
    pub regularization: f32,
    /// α in `c = 1 + α r`.
    pub alpha: f32,
    pub solver: Solver,
    /// Seeds the initial factors (uniform in `[0, 0.01)`, users then items, like `implicit`).
    pub seed: u64,
    /// Worker threads per sweep; results do not depend on it.
    pub threads: usize,
}

impl Default for AlsConfig {
    fn default() -> Self {
        AlsConfig {
            factors: 64,
            iterations: 15,
            regularization: 0.05,
            alpha: 2.0,
            solver: Solver::ConjugateGradient { steps: 3 },
            seed: 42,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AlsError {
    #[error("factors must be at least 1")]
    NoFactors,
    #[error("regularization must be positive, got {0}")]
    Regularization(f32),
    #[error("{what} has {len} values, expected {rows} rows × {factors} factors")]
    FactorShape {
        what: &'static str,
        len: usize,
        rows: usize,
        factors: usize,
    },
}

/// A trained factorization: one `factors`-long vector per user and per item, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct AlsModel {
    factors: usize,
    users: usize,
    items: usize,
    user_factors: Vec<f32>,
    item_factors: Vec<f32>,
    /// `YᵀY + λI`, for folding in new users and sessions.
    item_gram: Vec<f32>,
    regularization: f32,
    alpha: f32,
}

impl AlsModel {
    /// Trains on a user × item matrix of interaction strengths `r` (e.g. weighted counts).
    pub fn train(user_items: &Csr, config: &AlsConfig) -> Result<AlsModel, AlsError> {
        if config.factors == 0 {
            return Err(AlsError::NoFactors);
        }
        if config.regularization.is_nan() || config.regularization <= 0.0 {
            return Err(AlsError::Regularization(config.regularization));
        }
        let k = config.factors;
        let alpha = config.alpha;
        let user_confidence = user_items.map_values(|r| 1.0 + alpha * r);
        let item_confidence = user_confidence.transpose();
        let (users, items) = (user_items.rows(), user_items.cols());
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut user_factors: Vec<f32> =
            (0..users * k).map(|_| rng.r#gen::<f32>() * 0.01).collect();
        let mut item_factors: Vec<f32> =
            (0..items * k).map(|_| rng.r#gen::<f32>() * 0.01).collect();
        let threads = config.threads.max(1);
        for _ in 0..config.iterations {
            let sweep = Sweep {
                confidence: &user_confidence,
                fixed: &item_factors,
                gram: gram(&item_factors, k, config.regularization),
                factors: k,
                solver: config.solver,
            };
            sweep.run(&mut user_factors, threads);
            let sweep = Sweep {
                confidence: &item_confidence,
                fixed: &user_factors,
                gram: gram(&user_factors, k, config.regularization),
                factors: k,
                solver: config.solver,
            };
            sweep.run(&mut item_factors, threads);
        }
        Ok(AlsModel {
            item_gram: gram(&item_factors, k, config.regularization),
            factors: k,
            users,
            items,
            user_factors,
            item_factors,
            regularization: config.regularization,
            alpha,
        })
    }

    /// A model from factors trained elsewhere (e.g. `implicit`, to score it with our metrics).
    pub fn from_factors(
        factors: usize,
        user_factors: Vec<f32>,
        item_factors: Vec<f32>,
        regularization: f32,
        alpha: f32,
    ) -> Result<AlsModel, AlsError> {
        if factors == 0 {
            return Err(AlsError::NoFactors);
        }
        for (what, values) in [
            ("user factors", &user_factors),
            ("item factors", &item_factors),
        ] {
            if values.len() % factors != 0 {
                return Err(AlsError::FactorShape {
                    what,
                    len: values.len(),
                    rows: values.len() / factors,
                    factors,
                });
            }
        }
        Ok(AlsModel {
            item_gram: gram(&item_factors, factors, regularization),
            factors,
            users: user_factors.len() / factors,
            items: item_factors.len() / factors,
            user_factors,
            item_factors,
            regularization,
            alpha,
        })
    }

    pub fn factors(&self) -> usize {
        self.factors
    }

    pub fn users(&self) -> usize {
        self.users
    }

    pub fn items(&self) -> usize {
        self.items
    }

    pub fn user_vector(&self, user: usize) -> &[f32] {
        &self.user_factors[user * self.factors..(user + 1) * self.factors]
    }

    pub fn item_vector(&self, item: ItemIndex) -> &[f32] {
        let item = item as usize;
        &self.item_factors[item * self.factors..(item + 1) * self.factors]
    }

    pub fn user_factors(&self) -> &[f32] {
        &self.user_factors
    }

    pub fn item_factors(&self) -> &[f32] {
        &self.item_factors
    }

    /// `yᵢᵀ u` for every item.
    pub fn score_items(&self, user_vector: &[f32]) -> Vec<f32> {
        assert_eq!(user_vector.len(), self.factors);
        self.item_factors
            .chunks_exact(self.factors)
            .map(|item| dot(item, user_vector))
            .collect()
    }

    /// The `count` best items for `user_vector` that `exclude` does not reject, best first;
    /// ties go to the lower index.
    pub fn recommend(
        &self,
        user_vector: &[f32],
        count: usize,
        exclude: impl Fn(ItemIndex) -> bool,
    ) -> Vec<(ItemIndex, f32)> {
        let scores = self.score_items(user_vector);
        top_k(&scores, count, exclude)
    }

    /// The user vector that best explains `interactions` (`(item, r)`) given the item factors:
    /// one exact least-squares solve. Serves new users and anonymous sessions without retraining.
    pub fn fold_in(&self, interactions: &[(ItemIndex, f32)]) -> Vec<f32> {
        let k = self.factors;
        let mut a = DMatrix::from_row_slice(k, k, &self.item_gram);
        let mut b = DVector::<f32>::zeros(k);
        for &(item, strength) in interactions {
            if (item as usize) >= self.items || strength <= 0.0 {
                continue;
            }
            let confidence = 1.0 + self.alpha * strength;
            let y = DVector::from_column_slice(self.item_vector(item));
            a.ger(confidence - 1.0, &y, &y, 1.0);
            b.axpy(confidence, &y, 1.0);
        }
        match a.cholesky() {
            Some(cholesky) => cholesky.solve(&b).as_slice().to_vec(),
            None => vec![0.0; k],
        }
    }

    /// Of `history`, the item whose factors are most aligned (cosine) with `item`: the
    /// "because you …" of a matrix-factorization recommendation.
    pub fn because_of(&self, item: ItemIndex, history: &[ItemIndex]) -> Option<ItemIndex> {
        let target = self.item_vector(item);
        let target_norm = dot(target, target).sqrt();
        let mut best: Option<(f32, ItemIndex)> = None;
        for &seen in history {
            if seen as usize >= self.items || seen == item {
                continue;
            }
            let vector = self.item_vector(seen);
            let norm = dot(vector, vector).sqrt() * target_norm;
            if norm <= 0.0 {
                continue;
            }
            let cosine = dot(vector, target) / norm;
            if best.is_none_or(|(b, _)| cosine > b) {
                best = Some((cosine, seen));
            }
        }
        best.map(|(_, seen)| seen)
    }
}

/// The `count` best-scoring indices not rejected by `exclude`, best first, ties by index.
pub fn top_k(scores: &[f32], count: usize, exclude: impl Fn(ItemIndex) -> bool) -> Vec<(u32, f32)> {
    let mut ranked: Vec<(u32, f32)> = scores
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u32, *s))
        .filter(|(i, s)| !s.is_nan() && !exclude(*i))
        .collect();
    let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if ranked.len() > count && count > 0 {
        ranked.select_nth_unstable_by(count - 1, order);
    }
    ranked.truncate(count);
    ranked.sort_by(order);
    ranked
}

/// `FᵀF + λI` for row-major `rows × k` factors `F`, as a row-major `k × k` matrix.
fn gram(factors: &[f32], k: usize, regularization: f32) -> Vec<f32> {
    let rows = factors.len() / k;
    // Row-major rows × k is column-major k × rows: column j is row j's vector.
    let view = DMatrixView::from_slice(factors, k, rows);
    let mut product: DMatrix<f32> = view * view.transpose();
    for d in 0..k {
        product[(d, d)] += regularization;
    }
    // Symmetric: the column-major storage is also the row-major one.
    product.as_slice().to_vec()
}

/// One half-iteration: re-solve every row of `solved` with `fixed` held constant.
struct Sweep<'a> {
    confidence: &'a Csr,
    fixed: &'a [f32],
    gram: Vec<f32>,
    factors: usize,
    solver: Solver,
}

impl Sweep<'_> {
    fn run(&self, solved: &mut [f32], threads: usize) {
        let k = self.factors;
        let ranges = balanced_ranges(self.confidence, threads, k);
        if ranges.len() == 1 {
            self.solve_rows(ranges[0].clone(), solved);
            return;
        }
        std::thread::scope(|scope| {
            let mut rest = solved;
            for range in ranges {
                let (chunk, tail) = rest.split_at_mut(range.len() * k);
                rest = tail;
                scope.spawn(move || self.solve_rows(range, chunk));
            }
        });
    }

    fn solve_rows(&self, rows: Range<usize>, out: &mut [f32]) {
        let k = self.factors;
        match self.solver {
            Solver::ConjugateGradient { steps } => {
                let mut scratch = Scratch::new(k, BLOCK_ROWS);
                let mut start = rows.start;
                while start < rows.end {
                    let end = (start + BLOCK_ROWS).min(rows.end);
                    let block = &mut out[(start - rows.start) * k..(end - rows.start) * k];
                    self.conjugate_gradient_block(start..end, block, steps, &mut scratch);
                    start = end;
                }
            }
            Solver::Cholesky => {
                for (offset, row) in rows.enumerate() {
                    let (cols, confidences) = self.confidence.row(row);
                    self.cholesky(&mut out[offset * k..(offset + 1) * k], cols, confidences);
                }
            }
        }
    }

    /// Warm-started CG on `(YᵀY + λI + Yᵀ(Cᵤ − I)Y) x = YᵀCᵤp` for a block of rows in
    /// lockstep, never forming the matrices: the dense `(YᵀY + λI) p` products of the whole
    /// block are one matrix product; the sparse corrections are per row. Each row follows the
    /// iteration it would follow alone (including stopping once its residual vanishes).
    fn conjugate_gradient_block(
        &self,
        rows: Range<usize>,
        x: &mut [f32],
        steps: usize,
        scratch: &mut Scratch,
    ) {
        let k = self.factors;
        let count = rows.len();
        let Scratch {
            r,
            p,
            ap,
            rs_old,
            active,
        } = scratch;
        let (r, p, ap) = (
            &mut r[..count * k],
            &mut p[..count * k],
            &mut ap[..count * k],
        );
        // r = b − A x
        times_gram(&self.gram, x, r, k);
        for (offset, row) in rows.clone().enumerate() {
            let x_row = &x[offset * k..(offset + 1) * k];
            let r_row = &mut r[offset * k..(offset + 1) * k];
            r_row.iter_mut().for_each(|v| *v = -*v);
            let (cols, confidences) = self.confidence.row(row);
            for (&col, &confidence) in cols.iter().zip(confidences) {
                let y = &self.fixed[col as usize * k..(col as usize + 1) * k];
                let scale = confidence - (confidence - 1.0) * dot(y, x_row);
                axpy(scale, y, r_row);
            }
            rs_old[offset] = dot(r_row, r_row);
            active[offset] = rs_old[offset] >= 1e-20;
        }
        p.copy_from_slice(r);
        for _ in 0..steps {
            if !active[..count].iter().any(|a| *a) {
                break;
            }
            times_gram(&self.gram, p, ap, k);
            for (offset, row) in rows.clone().enumerate() {
                if !active[offset] {
                    continue;
                }
                let span = offset * k..(offset + 1) * k;
                let (p_row, ap_row) = (&mut p[span.clone()], &mut ap[span.clone()]);
                let (cols, confidences) = self.confidence.row(row);
                for (&col, &confidence) in cols.iter().zip(confidences) {
                    let y = &self.fixed[col as usize * k..(col as usize + 1) * k];
                    axpy((confidence - 1.0) * dot(y, p_row), y, ap_row);
                }
                let step = rs_old[offset] / dot(p_row, ap_row);
                axpy(step, p_row, &mut x[span.clone()]);
                let r_row = &mut r[span];
                axpy(-step, ap_row, r_row);
                let rs_new = dot(r_row, r_row);
                if rs_new < 1e-20 {
                    active[offset] = false;
                    continue;
                }
                let ratio = rs_new / rs_old[offset];
                for (pv, rv) in p_row.iter_mut().zip(r_row.iter()) {
                    *pv = rv + ratio * *pv;
                }
                rs_old[offset] = rs_new;
            }
        }
    }

    fn cholesky(&self, x: &mut [f32], cols: &[u32], confidences: &[f32]) {
        let k = self.factors;
        let mut a = DMatrix::from_row_slice(k, k, &self.gram);
        let mut b = DVector::<f32>::zeros(k);
        for (&col, &confidence) in cols.iter().zip(confidences) {
            let y =
                DVector::from_column_slice(&self.fixed[col as usize * k..(col as usize + 1) * k]);
            a.ger(confidence - 1.0, &y, &y, 1.0);
            b.axpy(confidence, &y, 1.0);
        }
        if let Some(cholesky) = a.cholesky() {
            x.copy_from_slice(cholesky.solve(&b).as_slice());
        }
    }
}

/// Rows solved together by the CG solver.
const BLOCK_ROWS: usize = 256;

struct Scratch {
    r: Vec<f32>,
    p: Vec<f32>,
    ap: Vec<f32>,
    rs_old: Vec<f32>,
    active: Vec<bool>,
}

impl Scratch {
    fn new(k: usize, rows: usize) -> Scratch {
        Scratch {
            r: vec![0.0; k * rows],
            p: vec![0.0; k * rows],
            ap: vec![0.0; k * rows],
            rs_old: vec![0.0; rows],
            active: vec![false; rows],
        }
    }
}

/// `out = input · G` for row-major `rows × k` blocks and a symmetric `k × k` `G` (one GEMM).
fn times_gram(gram: &[f32], input: &[f32], out: &mut [f32], k: usize) {
    let rows = input.len() / k;
    // Row-major rows × k is column-major k × rows, so this is G · inputᵀ in column-major terms.
    let gram_view = DMatrixView::from_slice(gram, k, k);
    let input_view = DMatrixView::from_slice(input, k, rows);
    let mut out_view = DMatrixViewMut::from_slice(out, k, rows);
    out_view.gemm(1.0, &gram_view, &input_view, 0.0);
}

/// Up to `threads` contiguous row ranges of about equal work (`k` per row plus `nnz` per row).
#[allow(clippy::single_range_in_vec_init)]
fn balanced_ranges(matrix: &Csr, threads: usize, k: usize) -> Vec<Range<usize>> {
    let rows = matrix.rows();
    if threads <= 1 || rows < 2 * threads {
        return vec![0..rows];
    }
    let cost = |row: usize| (k + 2 * matrix.row_nnz(row)) as u64;
    let total: u64 = (0..rows).map(cost).sum();
    let mut ranges = Vec::with_capacity(threads);
    let mut start = 0;
    let mut accumulated = 0u64;
    for row in 0..rows {
        accumulated += cost(row);
        let boundary = total * (ranges.len() as u64 + 1) / threads as u64;
        if accumulated >= boundary && ranges.len() + 1 < threads {
            ranges.push(start..row + 1);
            start = row + 1;
        }
    }
    ranges.push(start..rows);
    ranges
}

/// Dot product with sixteen independent accumulators, so the compiler can vectorize it and
/// keep several vector additions in flight.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    const LANES: usize = 16;
    let mut lanes = [0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (a_tail, b_tail) = (a_chunks.remainder(), b_chunks.remainder());
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    let mut half = LANES / 2;
    while half > 0 {
        for lane in 0..half {
            lanes[lane] += lanes[lane + half];
        }
        half /= 2;
    }
    let mut sum = lanes[0];
    for (x, y) in a_tail.iter().zip(b_tail) {
        sum += x * y;
    }
    sum
}

/// `y += a x`.
#[inline]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv += a * xv;
    }
}

/// The weighted squared error plus regularization of a model on `user_items` (dense; for tests
/// and small diagnostics only).
pub fn training_loss(model: &AlsModel, user_items: &Csr) -> f64 {
    let mut loss = 0.0f64;
    for user in 0..model.users() {
        let (cols, values) = user_items.row(user);
        let scores = model.score_items(model.user_vector(user));
        for (item, score) in scores.iter().enumerate() {
            let (confidence, preference) = match cols.binary_search(&(item as u32)) {
                Ok(position) => (1.0 + model.alpha * values[position], 1.0),
                Err(_) => (1.0, 0.0),
            };
            loss += f64::from(confidence) * f64::from(preference - score).powi(2);
        }
    }
    let norms: f64 = model
        .user_factors
        .iter()
        .chain(&model.item_factors)
        .map(|v| f64::from(*v).powi(2))
        .sum();
    loss + f64::from(model.regularization) * norms
}
