//! Plain text tables for terminals, and small number helpers shared by the operators.

use std::fmt;

/// A table of text cells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextTable {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl TextTable {
    pub fn new(headers: &[&str]) -> TextTable {
        TextTable {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }
}

impl fmt::Display for TextTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (index, cell) in row.iter().enumerate() {
                if index < widths.len() {
                    widths[index] = widths[index].max(cell.chars().count());
                }
            }
        }
        let rule: String = widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+");
        let line = |cells: &[String]| -> String {
            let padded: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(index, width)| {
                    let cell = cells.get(index).map(String::as_str).unwrap_or("");
                    format!(" {cell:<width$} ")
                })
                .collect();
            format!("|{}|", padded.join("|"))
        };
        writeln!(f, "+{rule}+")?;
        writeln!(f, "{}", line(&self.headers))?;
        writeln!(f, "+{rule}+")?;
        for row in &self.rows {
            writeln!(f, "{}", line(row))?;
        }
        write!(f, "+{rule}+")
    }
}

/// Responses that print as a table.
pub(crate) trait Tabular {
    fn table(&self) -> TextTable;
}

pub(crate) fn cell_opt(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "-".to_owned())
}

pub(crate) fn cell_f64(value: f64) -> String {
    format!("{value:.2}")
}

pub(crate) fn cell_ratio(value: Option<f64>) -> String {
    match value {
        Some(value) => format!("{:.2}%", value * 100.0),
        None => "-".to_owned(),
    }
}

/// `numerator / denominator`, `None` when the denominator is zero.
pub(crate) fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator != 0.0).then(|| numerator / denominator)
}

/// The median (mean of the two middle values for an even count), `None` when empty.
pub(crate) fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0]), Some(3.0));
        assert_eq!(median(&mut [4.0, 1.0]), Some(2.5));
        assert_eq!(median(&mut [5.0, 1.0, 3.0]), Some(3.0));
    }

    #[test]
    fn renders_aligned_columns() {
        let mut table = TextTable::new(&["a", "bb"]);
        table.rows.push(vec!["xyz".into(), "1".into()]);
        assert_eq!(
            table.to_string(),
            "+-----+----+\n| a   | bb |\n+-----+----+\n| xyz | 1  |\n+-----+----+"
        );
    }
}
