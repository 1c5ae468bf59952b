use atrium_recs::als::training_loss;
use atrium_recs::{AlsConfig, AlsError, AlsModel, Csr, Solver};

/// Two taste clusters: users 0..20 like items 0..15, users 20..40 like items 15..30; each user
/// interacted with a deterministic subset.
pub fn clustered() -> Csr {
    let mut triplets = Vec::new();
    for user in 0..40u32 {
        let base = if user < 20 { 0 } else { 15 };
        for offset in 0..15u32 {
            if splitmix(u64::from(user * 1000 + offset)) % 10 < 4 {
                triplets.push((user, base + offset, 1.0 + (offset % 3) as f32));
            }
        }
    }
    Csr::from_triplets(40, 30, &triplets)
}

fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn config(solver: Solver, threads: usize) -> AlsConfig {
    AlsConfig {
        factors: 4,
        iterations: 10,
        regularization: 0.1,
        alpha: 2.0,
        solver,
        seed: 7,
        threads,
    }
}

#[test]
fn deterministic_for_a_seed_whatever_the_thread_count() {
    let data = clustered();
    let cg = Solver::ConjugateGradient { steps: 3 };
    let one = AlsModel::train(&data, &config(cg, 1)).unwrap();
    let two = AlsModel::train(&data, &config(cg, 2)).unwrap();
    let three = AlsModel::train(&data, &config(cg, 3)).unwrap();
    assert_eq!(one, two);
    assert_eq!(one, three);
    let other_seed = AlsModel::train(
        &data,
        &AlsConfig {
            seed: 8,
            ..config(cg, 1)
        },
    )
    .unwrap();
    assert_ne!(one, other_seed);
    let chol_one = AlsModel::train(&data, &config(Solver::Cholesky, 1)).unwrap();
    let chol_two = AlsModel::train(&data, &config(Solver::Cholesky, 2)).unwrap();
    assert_eq!(chol_one, chol_two);
}

#[test]
fn loss_decreases_and_cg_approaches_the_exact_solve() {
    let data = clustered();
    let loss_after = |iterations, solver| {
        let model = AlsModel::train(
            &data,
            &AlsConfig {
                iterations,
                ..config(solver, 2)
            },
        )
        .unwrap();
        training_loss(&model, &data)
    };
    let cg = Solver::ConjugateGradient { steps: 3 };
    let (one, five, fifteen) = (loss_after(1, cg), loss_after(5, cg), loss_after(15, cg));
    assert!(one > five && five > fifteen, "{one} {five} {fifteen}");
    let exact = loss_after(15, Solver::Cholesky);
    assert!(
        (fifteen - exact).abs() / exact < 0.05,
        "cg {fifteen} vs cholesky {exact}"
    );
}

#[test]
fn recommends_unseen_items_of_the_users_cluster() {
    let data = clustered();
    let model = AlsModel::train(&data, &config(Solver::ConjugateGradient { steps: 3 }, 2)).unwrap();
    for user in [0usize, 5, 25, 39] {
        let recommended =
            model.recommend(model.user_vector(user), 3, |item| data.contains(user, item));
        assert_eq!(recommended.len(), 3);
        for (item, _) in recommended {
            assert!(!data.contains(user, item));
            let same_cluster = (user < 20) == (item < 15);
            assert!(same_cluster, "user {user} got item {item}");
        }
    }
}

#[test]
fn fold_in_reproduces_a_trained_users_taste() {
    let data = clustered();
    let model = AlsModel::train(&data, &config(Solver::Cholesky, 1)).unwrap();
    let (items, values) = data.row(3);
    let history: Vec<(u32, f32)> = items.iter().copied().zip(values.iter().copied()).collect();
    let folded = model.fold_in(&history);
    // After an exact user sweep with the final item factors the fold-in equals the solve.
    let trained = model.user_vector(3);
    let difference: f32 = folded.iter().zip(trained).map(|(a, b)| (a - b).abs()).sum();
    let norm: f32 = trained.iter().map(|v| v.abs()).sum();
    assert!(difference / norm < 0.2, "{difference} vs {norm}");
    let best = model.recommend(&folded, 3, |item| data.contains(3, item));
    assert!(best.iter().all(|(item, _)| *item < 15));
}

#[test]
fn rejects_bad_configurations_and_shapes() {
    let data = clustered();
    let bad = AlsConfig {
        factors: 0,
        ..AlsConfig::default()
    };
    assert_eq!(AlsModel::train(&data, &bad), Err(AlsError::NoFactors));
    let bad = AlsConfig {
        regularization: 0.0,
        ..AlsConfig::default()
    };
    assert_eq!(
        AlsModel::train(&data, &bad),
        Err(AlsError::Regularization(0.0))
    );
    assert!(matches!(
        AlsModel::from_factors(4, vec![0.0; 6], vec![0.0; 8], 0.1, 1.0),
        Err(AlsError::FactorShape { .. })
    ));
}
