//! Content similarity from catalog attributes: TF-IDF over attribute tokens, cosine similarity.
//! Works for items nobody has interacted with yet (cold start).

use std::collections::HashMap;

use crate::ItemIndex;
use crate::catalog::{Catalog, CatalogItem};
use crate::rules::{Candidate, Reason};

#[derive(Clone, Debug)]
pub struct ContentIndex {
    tokens: Vec<String>,
    /// Per item: `(token, weight)`, token ascending, L2-normalized.
    vectors: Vec<Vec<(u32, f32)>>,
    /// Per token: items having it.
    postings: Vec<Vec<ItemIndex>>,
}

/// The features an item is described by: category, brand, attributes, title words and a
/// price band (powers of two).
pub fn item_tokens(item: &CatalogItem) -> Vec<String> {
    let mut tokens = vec![format!("category={}", item.category.to_lowercase())];
    if let Some(brand) = &item.brand {
        tokens.push(format!("brand={}", brand.to_lowercase()));
    }
    for (name, value) in &item.attributes {
        tokens.push(format!("{}={}", name.to_lowercase(), value.to_lowercase()));
    }
    for word in item
        .title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
    {
        tokens.push(format!("title~{}", word.to_lowercase()));
    }
    if item.price > 0.0 {
        let band = item.price.log2().floor() as i32;
        tokens.push(format!("price={}-{}", 2f64.powi(band), 2f64.powi(band + 1)));
    }
    tokens.sort();
    tokens.dedup();
    tokens
}

impl ContentIndex {
    pub fn build(catalog: &Catalog) -> ContentIndex {
        let mut token_ids: HashMap<String, u32> = HashMap::new();
        let mut tokens: Vec<String> = Vec::new();
        let mut item_token_ids: Vec<Vec<u32>> = Vec::with_capacity(catalog.len());
        for item in catalog.items() {
            let mut ids: Vec<u32> = item_tokens(item)
                .into_iter()
                .map(|token| {
                    *token_ids.entry(token.clone()).or_insert_with(|| {
                        tokens.push(token);
                        (tokens.len() - 1) as u32
                    })
                })
                .collect();
            ids.sort_unstable();
            item_token_ids.push(ids);
        }
        let mut postings: Vec<Vec<ItemIndex>> = vec![Vec::new(); tokens.len()];
        for (item, ids) in item_token_ids.iter().enumerate() {
            for &token in ids {
                postings[token as usize].push(item as ItemIndex);
            }
        }
        let items = catalog.len().max(1) as f32;
        let idf: Vec<f32> = postings
            .iter()
            .map(|p| (items / p.len() as f32).ln() + 1.0)
            .collect();
        let vectors = item_token_ids
            .iter()
            .map(|ids| {
                let norm = ids
                    .iter()
                    .map(|t| idf[*t as usize].powi(2))
                    .sum::<f32>()
                    .sqrt()
                    .max(f32::MIN_POSITIVE);
                ids.iter().map(|t| (*t, idf[*t as usize] / norm)).collect()
            })
            .collect();
        ContentIndex {
            tokens,
            vectors,
            postings,
        }
    }

    pub fn similarity(&self, a: ItemIndex, b: ItemIndex) -> f32 {
        let (x, y) = (&self.vectors[a as usize], &self.vectors[b as usize]);
        let (mut i, mut j, mut sum) = (0, 0, 0.0f32);
        while i < x.len() && j < y.len() {
            match x[i].0.cmp(&y[j].0) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    sum += x[i].1 * y[j].1;
                    i += 1;
                    j += 1;
                }
            }
        }
        sum
    }

    /// The up to three shared features contributing most to the similarity of `a` and `b`.
    pub fn shared_features(&self, a: ItemIndex, b: ItemIndex) -> Vec<String> {
        let y: HashMap<u32, f32> = self.vectors[b as usize].iter().copied().collect();
        let mut shared: Vec<(f32, u32)> = self.vectors[a as usize]
            .iter()
            .filter_map(|(t, w)| y.get(t).map(|v| (w * v, *t)))
            .collect();
        shared.sort_by(|p, q| q.0.total_cmp(&p.0).then(p.1.cmp(&q.1)));
        shared
            .into_iter()
            .take(3)
            .map(|(_, t)| self.tokens[t as usize].clone())
            .collect()
    }

    /// Items most similar to `item` (cosine > 0), best first.
    pub fn similar(&self, item: ItemIndex, count: usize) -> Vec<(ItemIndex, f32)> {
        let mut scores: HashMap<ItemIndex, f32> = HashMap::new();
        for &(token, weight) in &self.vectors[item as usize] {
            for &other in &self.postings[token as usize] {
                if other == item {
                    continue;
                }
                let other_weight = self.vectors[other as usize]
                    .binary_search_by_key(&token, |(t, _)| *t)
                    .map(|p| self.vectors[other as usize][p].1)
                    .unwrap_or(0.0);
                *scores.entry(other).or_default() += weight * other_weight;
            }
        }
        let mut out: Vec<(ItemIndex, f32)> = scores.into_iter().filter(|(_, s)| *s > 0.0).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out.truncate(count);
        out
    }

    /// Items similar to any of `seeds`, scored by the best similarity to one of them.
    pub fn candidates(&self, seeds: &[ItemIndex], per_seed: usize) -> Vec<Candidate> {
        let mut best: HashMap<ItemIndex, (f32, ItemIndex)> = HashMap::new();
        for &seed in seeds {
            for (other, similarity) in self.similar(seed, per_seed) {
                if seeds.contains(&other) {
                    continue;
                }
                let entry = best.entry(other).or_insert((similarity, seed));
                if similarity > entry.0 {
                    *entry = (similarity, seed);
                }
            }
        }
        let mut out: Vec<Candidate> = best
            .into_iter()
            .map(|(item, (score, seed))| Candidate {
                item,
                score,
                reason: Reason::SimilarTo {
                    item: seed,
                    shared: self.shared_features(item, seed),
                },
            })
            .collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
        out
    }
}
