//! Offline evaluation harness: MostPop vs Atrium's ALS (and, if exported, `implicit`'s ALS),
//! all scored by `atrium_recs::eval`.
//!
//! ```text
//! offline_eval split  (--movielens FILE | --shop EVENTS) --out DIR [--seed N] [--temporal]
//! offline_eval report --out DIR [--factors 64] [--iterations 15] [--regularization R]
//!                     [--alpha A] [--threads 2] [--repeat 3] [--cholesky]
//! ```
//!
//! `split` writes `DIR/train.tsv`, `DIR/test.tsv` (`user<TAB>item<TAB>strength`) and
//! `DIR/shape.txt`. FILE is MovieLens-100K as `u.data` or RecBole's `ml-100k.inter`; every
//! rating counts as one implicit interaction (strength 1). `--shop` generates that many events
//! of the demo shop (atrium-gen) and weights them by kind and recency. `report` trains on
//! `train.tsv`, scores `test.tsv` at k = 10 and, when `DIR/implicit_user_factors.f32`,
//! `DIR/implicit_item_factors.f32` and `DIR/implicit.txt` exist (written by
//! `tests/implicit/compare.py`), scores those factors with the same code.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use atrium_recs::eval::{
    RankingMetrics, evaluate, popularity_scores, random_split, recommend_unseen, temporal_split,
};
use atrium_recs::{
    AlsConfig, AlsModel, Csr, EventKind, Interaction, InteractionLog, Solver, Weights,
};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        return Err("usage: offline_eval split|report ... (see the file header)".into());
    };
    let options = Options::parse(&args[1..])?;
    match command.as_str() {
        "split" => split(&options),
        "report" => report(&options),
        other => Err(format!("unknown command {other:?}").into()),
    }
}

struct Options {
    values: HashMap<String, String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, Error> {
        let mut values = HashMap::new();
        let mut rest = args.iter();
        while let Some(flag) = rest.next() {
            let Some(name) = flag.strip_prefix("--") else {
                return Err(format!("unexpected argument {flag:?}").into());
            };
            if matches!(name, "temporal" | "cholesky") {
                values.insert(name.to_owned(), "true".to_owned());
                continue;
            }
            let value = rest
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?;
            values.insert(name.to_owned(), value.clone());
        }
        Ok(Options { values })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, Error> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| format!("--{name}: not a number: {text:?}").into()),
        }
    }

    fn out_dir(&self) -> Result<PathBuf, Error> {
        Ok(PathBuf::from(
            self.get("out").ok_or("--out DIR is required")?,
        ))
    }
}

fn split(options: &Options) -> Result<(), Error> {
    let out = options.out_dir()?;
    fs::create_dir_all(&out)?;
    let seed: u64 = options.number("seed", 42)?;
    let (users, items, interactions, weights) = if let Some(path) = options.get("movielens") {
        let (users, items, interactions) = read_movielens(Path::new(path))?;
        (users, items, interactions, Weights::uniform(1.0))
    } else if let Some(events) = options.get("shop") {
        let (users, items, interactions) = generated_shop(seed, events.parse()?);
        (users, items, interactions, Weights::default())
    } else {
        return Err("split needs --movielens FILE or --shop EVENTS".into());
    };
    let split = if options.get("temporal").is_some() {
        temporal_split(&interactions, 0.2)
    } else {
        random_split(&interactions, 0.2, seed)
    };
    let now = interactions
        .iter()
        .map(|i| i.timestamp_ms)
        .max()
        .unwrap_or(0);
    let train = Csr::from_interactions(users, items, &split.train, &weights, now);
    let test = Csr::from_interactions(users, items, &split.test, &Weights::uniform(1.0), now);
    write_matrix(&out.join("train.tsv"), &train)?;
    write_matrix(&out.join("test.tsv"), &test)?;
    fs::write(out.join("shape.txt"), format!("{users} {items}\n"))?;
    println!(
        "split: {users} users, {items} items, {} train and {} test (user, item) pairs -> {}",
        train.nnz(),
        test.nnz(),
        out.display()
    );
    Ok(())
}

fn report(options: &Options) -> Result<(), Error> {
    let out = options.out_dir()?;
    let shape = fs::read_to_string(out.join("shape.txt"))?;
    let mut dims = shape.split_whitespace().map(str::parse::<usize>);
    let (Some(Ok(users)), Some(Ok(items))) = (dims.next(), dims.next()) else {
        return Err("bad shape.txt".into());
    };
    let train = read_matrix(&out.join("train.tsv"), users, items)?;
    let test = read_matrix(&out.join("test.tsv"), users, items)?;
    let config = AlsConfig {
        factors: options.number("factors", 64)?,
        iterations: options.number("iterations", 15)?,
        regularization: options.number("regularization", 20.0)?,
        alpha: options.number("alpha", 1.0)?,
        solver: if options.get("cholesky").is_some() {
            Solver::Cholesky
        } else {
            Solver::ConjugateGradient { steps: 3 }
        },
        seed: options.number("seed", 42)?,
        threads: options.number("threads", 2)?,
    };
    let repeat: usize = options.number("repeat", 3)?;
    let k = 10;

    let popular = popularity_scores(&train);
    let most_pop = evaluate(&test, items, k, |user| {
        recommend_unseen(&popular, &train, user, k)
    });

    let mut times = Vec::new();
    let mut model = None;
    for _ in 0..repeat.max(1) {
        let started = Instant::now();
        let trained = AlsModel::train(&train, &config)?;
        times.push(started.elapsed().as_secs_f64());
        model = Some(trained);
    }
    let model = model.expect("trained at least once");
    let atrium_seconds = median(&mut times);
    let atrium = evaluate_model(&model, &train, &test, items, k);

    println!(
        "dataset: {users} users, {items} items, {} train / {} test pairs; k = {k}",
        train.nnz(),
        test.nnz()
    );
    println!(
        "ALS: factors {}, iterations {}, regularization {}, alpha {} (c = 1 + alpha r), {:?}, {} threads",
        config.factors,
        config.iterations,
        config.regularization,
        config.alpha,
        config.solver,
        config.threads
    );
    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>8} {:>9} {:>12}",
        "model", "P@10", "R@10", "NDCG@10", "MAP@10", "coverage", "train s"
    );
    print_row("MostPop", &most_pop, None);
    print_row("atrium ALS", &atrium, Some(atrium_seconds));

    let implicit_meta = out.join("implicit.txt");
    if implicit_meta.exists() {
        let meta = fs::read_to_string(&implicit_meta)?;
        let mut fields = meta.split_whitespace();
        let factors: usize = fields.next().ok_or("implicit.txt: factors")?.parse()?;
        let seconds: f64 = fields.next().ok_or("implicit.txt: seconds")?.parse()?;
        let user_factors = read_f32(&out.join("implicit_user_factors.f32"))?;
        let item_factors = read_f32(&out.join("implicit_item_factors.f32"))?;
        let implicit = AlsModel::from_factors(
            factors,
            user_factors,
            item_factors,
            config.regularization,
            config.alpha,
        )?;
        if implicit.users() != users || implicit.items() != items {
            return Err(format!(
                "implicit factors are {} × {}, expected {users} × {items}",
                implicit.users(),
                implicit.items()
            )
            .into());
        }
        let scored = evaluate_model(&implicit, &train, &test, items, k);
        print_row("implicit ALS", &scored, Some(seconds));
        // CI gate: Atrium's ALS must reach this fraction of implicit's NDCG@10.
        let min_ratio: f64 = options.number("min-ndcg-ratio", 0.0)?;
        if atrium.ndcg < min_ratio * scored.ndcg {
            return Err(format!(
                "atrium ALS NDCG@10 {:.4} is below {min_ratio} × implicit's {:.4}",
                atrium.ndcg, scored.ndcg
            )
            .into());
        }
    }
    Ok(())
}

fn evaluate_model(
    model: &AlsModel,
    train: &Csr,
    test: &Csr,
    items: usize,
    k: usize,
) -> RankingMetrics {
    evaluate(test, items, k, |user| {
        model
            .recommend(model.user_vector(user), k, |item| {
                train.contains(user, item)
            })
            .into_iter()
            .map(|(item, _)| item)
            .collect()
    })
}

fn print_row(name: &str, metrics: &RankingMetrics, seconds: Option<f64>) {
    let seconds = seconds.map_or_else(|| "-".to_owned(), |s| format!("{s:.3}"));
    println!(
        "{name:<16} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>9.4} {seconds:>12}",
        metrics.precision, metrics.recall, metrics.ndcg, metrics.map, metrics.coverage
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// MovieLens ratings as implicit interactions: `u.data` (no header) or RecBole's `.inter`
/// (a header naming typed columns). Columns: user, item, rating, timestamp (seconds).
fn read_movielens(path: &Path) -> Result<(usize, usize, Vec<Interaction>), Error> {
    let text = fs::read_to_string(path)?;
    let mut log = InteractionLog::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() || (number == 0 && line.contains(':')) {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() < 4 {
            return Err(format!("{}:{}: expected 4 columns", path.display(), number + 1).into());
        }
        let seconds: f64 = fields[3].trim().parse()?;
        let user = log.users.intern(fields[0]);
        let item = log.items.intern(fields[1]);
        log.interactions.push(Interaction {
            user,
            item,
            kind: EventKind::OrderCompleted,
            timestamp_ms: (seconds * 1000.0) as i64,
            quantity: 1,
        });
    }
    Ok((log.users.len(), log.items.len(), log.interactions))
}

/// The demo shop's Segment stream, attributed by `userId` (else `anonymousId`).
fn generated_shop(seed: u64, events: usize) -> (usize, usize, Vec<Interaction>) {
    let mut generator = atrium_gen::Generator::new(atrium_gen::GenConfig::for_events(seed, events));
    let mut log = InteractionLog::new();
    for product in generator.catalog().to_vec() {
        log.items.intern(&product.product_id);
    }
    for event in generator.by_ref() {
        let profile = ["userId", "anonymousId"]
            .iter()
            .find_map(|key| event.get(*key).and_then(|v| v.as_str()).map(str::to_owned));
        let timestamp = event.get("timestamp").and_then(|v| v.as_str());
        let (Some(profile), Some(timestamp)) = (profile, timestamp) else {
            continue;
        };
        let Ok(at) = chrono::DateTime::parse_from_rfc3339(timestamp) else {
            continue;
        };
        log.ingest_segment(&profile, at.timestamp_millis(), &event);
    }
    (log.users.len(), log.items.len(), log.interactions)
}

fn write_matrix(path: &Path, matrix: &Csr) -> Result<(), Error> {
    let mut text = String::new();
    for row in 0..matrix.rows() {
        let (cols, values) = matrix.row(row);
        for (col, value) in cols.iter().zip(values) {
            text.push_str(&format!("{row}\t{col}\t{value}\n"));
        }
    }
    fs::write(path, text)?;
    Ok(())
}

fn read_matrix(path: &Path, rows: usize, cols: usize) -> Result<Csr, Error> {
    let text = fs::read_to_string(path)?;
    let mut triplets = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut fields = line.split('\t');
        let (Some(row), Some(col), Some(value)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("{}: bad line {line:?}", path.display()).into());
        };
        triplets.push((row.parse()?, col.parse()?, value.parse()?));
    }
    Ok(Csr::from_triplets(rows, cols, &triplets))
}

fn read_f32(path: &Path) -> Result<Vec<f32>, Error> {
    let bytes = fs::read(path)?;
    if bytes.len() % 4 != 0 {
        return Err(format!("{}: not a whole number of f32", path.display()).into());
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}
