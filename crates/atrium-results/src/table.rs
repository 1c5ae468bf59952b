//! The report as a readable text table (`atrium experiments results`).

use std::fmt::Write;

use crate::{MetricReport, Report};

fn percent(value: f64) -> String {
    format!("{:+.2}%", value * 100.0)
}

fn number(value: f64) -> String {
    if value.abs() >= 1_000.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.3}")
    } else {
        format!("{value:.4}")
    }
}

fn metric_rows(out: &mut String, report: &Report, metric: &MetricReport, indent: &str) {
    let title = metric.name.as_deref().unwrap_or(&metric.key);
    let mut flags = vec![
        metric.kind.as_str().to_owned(),
        format!("{:?}", metric.role).to_lowercase(),
    ];
    if metric.inverse {
        flags.push("inverse".into());
    }
    if metric.cuped {
        flags.push("CUPED".into());
    }
    if let Some(cap) = metric.cap_value {
        flags.push(format!("capped at {}", number(cap)));
    }
    let _ = writeln!(out, "{indent}{title} ({})", flags.join(", "));
    let bayesian = metric
        .effects
        .iter()
        .any(|effect| effect.chance_to_win.is_some());
    let _ = writeln!(
        out,
        "{indent}  {:<16} {:>9} {:>12} {:>10} {:>22} {:>10}",
        "variation",
        "users",
        "mean",
        "change",
        "interval",
        if bayesian { "P(better)" } else { "p-value" },
    );
    for (index, value) in metric.variations.iter().enumerate() {
        let name = report
            .variations
            .get(index)
            .map(|variation| {
                variation
                    .name
                    .clone()
                    .unwrap_or_else(|| variation.key.clone())
            })
            .unwrap_or_else(|| index.to_string());
        let mut line = format!(
            "{indent}  {:<16} {:>9} {:>12}",
            truncate(&name, 16),
            value.users,
            number(value.mean)
        );
        if index == 0 {
            let _ = write!(line, " {:>10}", "baseline");
        } else if let Some(effect) = metric.effects.get(index - 1) {
            let interval = effect.ci_adjusted.unwrap_or(effect.ci);
            let significance = match (
                effect.chance_to_win,
                effect.p_value_adjusted.or(effect.p_value),
            ) {
                (Some(chance), _) => format!("{:.1}%", chance * 100.0),
                (None, Some(p_value)) => format!("{p_value:.4}"),
                (None, None) => "-".into(),
            };
            let interval = if interval[0].is_finite() && interval[1].is_finite() {
                format!("[{}, {}]", percent(interval[0]), percent(interval[1]))
            } else {
                format!("[{}, {}]", number(interval[0]), number(interval[1]))
            };
            let _ = write!(
                line,
                " {:>10} {:>22} {:>10}",
                percent(effect.expected),
                interval,
                significance
            );
            if let Some(error) = effect.error {
                let _ = write!(line, "  ({})", error.code());
            }
        }
        let _ = writeln!(out, "{line}");
    }
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(width - 1).collect();
        short.push('…');
        short
    }
}

impl Report {
    /// A plain-text rendering: variations with users and SRM, then one block per metric.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "experiment {}", self.experiment);
        let engine = format!("{:?}", self.settings.engine).to_lowercase();
        let mut settings = vec![engine, format!("alpha {}", self.settings.alpha)];
        if let Some(tuning) = self.settings.sequential_tuning {
            settings.push(format!("sequential N*={tuning}"));
        }
        if let Some(correction) = self.settings.correction {
            settings.push(format!("{correction:?} correction"));
        }
        let _ = writeln!(out, "analysis: {}", settings.join(", "));
        let users: Vec<String> = self
            .variations
            .iter()
            .map(|variation| {
                format!(
                    "{} {} ({:.0}% planned)",
                    variation.name.as_deref().unwrap_or(&variation.key),
                    variation.users,
                    variation.weight * 100.0
                )
            })
            .collect();
        let _ = writeln!(out, "users: {}", users.join(" | "));
        let _ = writeln!(
            out,
            "sample ratio check: p = {:.4} ({})",
            self.srm.p_value,
            if self.srm.passed {
                "passed"
            } else {
                "FAILED: traffic split differs from the plan"
            }
        );
        if self.excluded.multiple_variations > 0 || self.excluded.unknown_variation > 0 {
            let _ = writeln!(
                out,
                "excluded: {} users seen in several variations, {} with an unknown variation id",
                self.excluded.multiple_variations, self.excluded.unknown_variation
            );
        }
        if self.metrics.is_empty() {
            let _ = writeln!(out, "\n(no goal or guardrail metrics on this experiment)");
        }
        for metric in &self.metrics {
            out.push('\n');
            metric_rows(&mut out, self, metric, "");
        }
        if let Some(dimension) = &self.dimension {
            let _ = writeln!(out, "\nby {}", dimension.dimension);
            for slice in &dimension.slices {
                let _ = writeln!(
                    out,
                    "\n  {} — users {:?}, sample ratio p = {:.4}",
                    slice.value, slice.users, slice.srm.p_value
                );
                for metric in &slice.metrics {
                    metric_rows(&mut out, self, metric, "  ");
                }
            }
        }
        let _ = writeln!(
            out,
            "\nquery {} ms, analysis {} ms",
            self.query_ms, self.analysis_ms
        );
        out
    }
}
