//! A compressed sparse row matrix of interaction strengths (rows are users or items).

use crate::interaction::{Interaction, Weights};

#[derive(Clone, Debug, PartialEq)]
pub struct Csr {
    rows: usize,
    cols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
}

impl Csr {
    /// Builds a matrix from `(row, col, value)` triplets; duplicates are summed, entries whose
    /// sum is not positive are dropped, and each row's columns end up sorted.
    pub fn from_triplets(rows: usize, cols: usize, triplets: &[(u32, u32, f32)]) -> Csr {
        let mut sorted: Vec<(u32, u32, f32)> = triplets.to_vec();
        sorted.sort_by_key(|&(row, col, _)| (row, col));
        let mut indptr = vec![0usize; rows + 1];
        let mut indices = Vec::with_capacity(sorted.len());
        let mut values = Vec::with_capacity(sorted.len());
        let mut position = 0;
        for row in 0..rows {
            while position < sorted.len() && (sorted[position].0 as usize) == row {
                let col = sorted[position].1;
                assert!((col as usize) < cols, "column {col} out of range {cols}");
                let mut sum = 0.0f32;
                while position < sorted.len()
                    && sorted[position].0 as usize == row
                    && sorted[position].1 == col
                {
                    sum += sorted[position].2;
                    position += 1;
                }
                if sum > 0.0 {
                    indices.push(col);
                    values.push(sum);
                }
            }
            indptr[row + 1] = indices.len();
        }
        assert!(position == sorted.len(), "row index out of range {rows}");
        Csr {
            rows,
            cols,
            indptr,
            indices,
            values,
        }
    }

    /// The user × item matrix of summed interaction weights as seen at `now_ms`.
    pub fn from_interactions(
        users: usize,
        items: usize,
        interactions: &[Interaction],
        weights: &Weights,
        now_ms: i64,
    ) -> Csr {
        let triplets: Vec<(u32, u32, f32)> = interactions
            .iter()
            .map(|interaction| {
                (
                    interaction.user,
                    interaction.item,
                    weights.weight(interaction, now_ms),
                )
            })
            .collect();
        Csr::from_triplets(users, items, &triplets)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// The columns and values of `row`, columns ascending.
    pub fn row(&self, row: usize) -> (&[u32], &[f32]) {
        let range = self.indptr[row]..self.indptr[row + 1];
        (&self.indices[range.clone()], &self.values[range])
    }

    pub fn row_nnz(&self, row: usize) -> usize {
        self.indptr[row + 1] - self.indptr[row]
    }

    pub fn contains(&self, row: usize, col: u32) -> bool {
        self.row(row).0.binary_search(&col).is_ok()
    }

    pub fn transpose(&self) -> Csr {
        let mut counts = vec![0usize; self.cols + 1];
        for &col in &self.indices {
            counts[col as usize + 1] += 1;
        }
        for col in 0..self.cols {
            counts[col + 1] += counts[col];
        }
        let indptr = counts.clone();
        let mut next = counts;
        let mut indices = vec![0u32; self.nnz()];
        let mut values = vec![0f32; self.nnz()];
        for row in 0..self.rows {
            let (cols, vals) = self.row(row);
            for (&col, &value) in cols.iter().zip(vals) {
                let slot = next[col as usize];
                indices[slot] = row as u32;
                values[slot] = value;
                next[col as usize] += 1;
            }
        }
        Csr {
            rows: self.cols,
            cols: self.rows,
            indptr,
            indices,
            values,
        }
    }

    /// A copy with every value replaced by `f(value)`.
    pub fn map_values(&self, f: impl Fn(f32) -> f32) -> Csr {
        let mut out = self.clone();
        for value in &mut out.values {
            *value = f(*value);
        }
        out
    }
}
