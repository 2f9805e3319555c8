//! Per-class precision, recall, F1 and support, their macro and weighted averages, and
//! the confusion matrix, defined as scikit-learn's `classification_report` and
//! `confusion_matrix` define them, so the numbers can be checked against it.
//!
//! Where scikit-learn warns and substitutes 0 (a class nothing was predicted as has no
//! precision; a class absent from the labels has no recall), the same 0 is reported with a
//! note instead of NaN. The averages run over the classes that occur in the labels or the
//! predictions, as `classification_report` does when it is not given a list of labels.

use serde::Serialize;

/// Counts of (true class, predicted class) pairs: row = true class, column = predicted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Confusion {
    rows: Vec<Vec<u64>>,
}

impl Confusion {
    /// Counts `truth[i]` against `predicted[i]` over `classes` classes; pairs naming a class
    /// past the last are not counted (the caller has checked labels and outputs already).
    pub fn count(classes: usize, truth: &[usize], predicted: &[usize]) -> Self {
        let mut rows = vec![vec![0u64; classes]; classes];
        for (&t, &p) in truth.iter().zip(predicted) {
            if let Some(cell) = rows.get_mut(t).and_then(|row| row.get_mut(p)) {
                *cell += 1;
            }
        }
        Confusion { rows }
    }

    pub fn classes(&self) -> usize {
        self.rows.len()
    }

    /// How many samples of class `truth` were predicted as `predicted`.
    pub fn get(&self, truth: usize, predicted: usize) -> u64 {
        self.rows[truth][predicted]
    }

    pub fn rows(&self) -> &[Vec<u64>] {
        &self.rows
    }

    /// Samples whose true class is `class`.
    fn support(&self, class: usize) -> u64 {
        self.rows[class].iter().sum()
    }

    /// Samples predicted as `class`.
    fn predicted(&self, class: usize) -> u64 {
        self.rows.iter().map(|row| row[class]).sum()
    }
}

/// One class's scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScores {
    pub class: usize,
    pub name: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Samples of this class in the labels.
    pub support: u64,
    /// Samples the model assigned to this class.
    pub predicted: u64,
}

/// An average of the per-class scores; `support` is the samples it covers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Average {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// Everything `cbam eval` reports per class for one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub per_class: Vec<ClassScores>,
    /// Unweighted mean over the classes that occur in the labels or the predictions.
    pub macro_avg: Average,
    /// Mean over the same classes weighted by their support.
    pub weighted_avg: Average,
    /// `confusion[true][predicted]`, over every class of the model.
    pub confusion: Confusion,
    pub notes: Vec<String>,
}

impl Metrics {
    /// The scores of `predicted` against `truth`; `names[c]` names class `c` (classes
    /// without a name are called by their index).
    pub fn new(classes: usize, names: &[String], truth: &[usize], predicted: &[usize]) -> Self {
        let confusion = Confusion::count(classes, truth, predicted);
        let name = |c: usize| names.get(c).cloned().unwrap_or_else(|| c.to_string());
        let per_class: Vec<ClassScores> = (0..classes)
            .map(|c| {
                let tp = confusion.get(c, c);
                let support = confusion.support(c);
                let predicted = confusion.predicted(c);
                let precision = ratio(tp, predicted);
                let recall = ratio(tp, support);
                ClassScores {
                    class: c,
                    name: name(c),
                    precision,
                    recall,
                    f1: harmonic_mean(precision, recall),
                    support,
                    predicted,
                }
            })
            .collect();
        let present: Vec<&ClassScores> = per_class
            .iter()
            .filter(|s| s.support > 0 || s.predicted > 0)
            .collect();
        let notes = notes(&per_class, &present);
        Metrics {
            macro_avg: average(&present, |_| 1.0),
            weighted_avg: average(&present, |s| s.support as f64),
            per_class,
            confusion,
            notes,
        }
    }
}

/// `part / whole`, 0 when `whole` is 0 (scikit-learn's `zero_division` default, minus the
/// warning: the caller adds a note).
fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn harmonic_mean(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// The mean of each score over `scores`, each weighted by `weight`; 0 when the weights
/// add up to 0.
fn average(scores: &[&ClassScores], weight: impl Fn(&ClassScores) -> f64) -> Average {
    let total: f64 = scores.iter().map(|s| weight(s)).sum();
    let mean = |value: fn(&ClassScores) -> f64| {
        if total == 0.0 {
            0.0
        } else {
            scores.iter().map(|s| value(s) * weight(s)).sum::<f64>() / total
        }
    };
    Average {
        precision: mean(|s| s.precision),
        recall: mean(|s| s.recall),
        f1: mean(|s| s.f1),
        support: scores.iter().map(|s| s.support).sum(),
    }
}

fn notes(per_class: &[ClassScores], present: &[&ClassScores]) -> Vec<String> {
    let list = |pick: &dyn Fn(&ClassScores) -> bool| {
        per_class
            .iter()
            .filter(|&s| pick(s))
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut notes = Vec::new();
    let unpredicted = list(&|s| s.predicted == 0 && s.support > 0);
    if !unpredicted.is_empty() {
        notes.push(format!(
            "no sample was predicted as {unpredicted}: precision is undefined there and \
             reported as 0"
        ));
    }
    let unlabelled = list(&|s| s.support == 0 && s.predicted > 0);
    if !unlabelled.is_empty() {
        notes.push(format!(
            "no sample is labelled {unlabelled}: recall is undefined there and reported as 0"
        ));
    }
    if present.len() < per_class.len() {
        notes.push(format!(
            "{} neither occur in the labels nor are predicted: left out of the averages",
            list(&|s| s.support == 0 && s.predicted == 0)
        ));
    }
    notes
}

#[cfg(test)]
mod tests;
