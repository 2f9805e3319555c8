use super::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|c| format!("c{c}")).collect()
}

/// The example of scikit-learn's `classification_report` documentation, worked by hand:
/// class 0 has 1 true positive of 2 predictions (p 1/2, r 1/1), class 1 none (p 0, r 0),
/// class 2 has 2 of 2 predictions and 2 of 3 samples (p 1, r 2/3, f1 4/5).
#[test]
fn three_classes_as_worked_by_hand() {
    let m = Metrics::new(3, &names(3), &[0, 1, 2, 2, 2], &[0, 0, 2, 2, 1]);
    assert_eq!(
        m.confusion.rows(),
        &[vec![1, 0, 0], vec![1, 0, 0], vec![0, 1, 2]]
    );
    let scores: Vec<(f64, f64, f64, u64)> = m
        .per_class
        .iter()
        .map(|s| (s.precision, s.recall, s.f1, s.support))
        .collect();
    let expected = [
        (0.5, 1.0, 2.0 / 3.0, 1),
        (0.0, 0.0, 0.0, 1),
        (1.0, 2.0 / 3.0, 0.8, 3),
    ];
    for (got, want) in scores.iter().zip(expected) {
        assert!(
            close(got.0, want.0) && close(got.1, want.1) && close(got.2, want.2),
            "{got:?} vs {want:?}"
        );
        assert_eq!(got.3, want.3);
    }
    // Macro: plain means of the three rows; weighted: by support 1, 1, 3 of 5.
    assert!(close(m.macro_avg.precision, 0.5));
    assert!(close(m.macro_avg.recall, (1.0 + 2.0 / 3.0) / 3.0));
    assert!(close(m.macro_avg.f1, (2.0 / 3.0 + 0.8) / 3.0));
    assert!(close(m.weighted_avg.precision, 3.5 / 5.0));
    assert!(close(m.weighted_avg.recall, 3.0 / 5.0));
    assert!(close(m.weighted_avg.f1, (2.0 / 3.0 + 2.4) / 5.0));
    assert_eq!((m.macro_avg.support, m.weighted_avg.support), (5, 5));
    assert!(m.notes.is_empty(), "{:?}", m.notes);
}

/// Class 1 is never predicted, class 3 never labelled, class 2 neither: the first two
/// score 0 with a note each, the third stays out of the averages.
#[test]
fn undefined_scores_are_zero_with_a_note_and_absent_classes_leave_the_averages() {
    let m = Metrics::new(4, &names(4), &[0, 0, 1, 1], &[0, 0, 0, 3]);
    let c = &m.per_class;
    assert!(close(c[0].precision, 2.0 / 3.0) && close(c[0].recall, 1.0) && close(c[0].f1, 0.8));
    assert_eq!((c[1].precision, c[1].recall, c[1].f1), (0.0, 0.0, 0.0));
    assert_eq!((c[3].precision, c[3].recall, c[3].predicted), (0.0, 0.0, 1));
    assert!(c.iter().all(|s| s.f1.is_finite()));
    // Over classes 0, 1 and 3.
    assert!(close(m.macro_avg.precision, 2.0 / 9.0));
    assert!(close(m.macro_avg.recall, 1.0 / 3.0));
    assert!(close(m.macro_avg.f1, 0.8 / 3.0));
    assert!(close(m.weighted_avg.precision, 1.0 / 3.0));
    assert!(close(m.weighted_avg.recall, 0.5));
    assert!(close(m.weighted_avg.f1, 0.4));
    assert_eq!(m.notes.len(), 3, "{:?}", m.notes);
    assert!(m.notes[0].contains("predicted as c1") && m.notes[0].contains("precision"));
    assert!(m.notes[1].contains("labelled c3") && m.notes[1].contains("recall"));
    assert!(m.notes[2].starts_with("c2 "));
}

#[test]
fn the_confusion_matrix_ignores_out_of_range_pairs_and_names_default_to_indices() {
    let m = Metrics::new(2, &["cat".into()], &[0, 1, 5], &[1, 1, 0]);
    assert_eq!(m.confusion.rows(), &[vec![0, 1], vec![0, 1]]);
    assert_eq!(
        (m.per_class[0].name.as_str(), m.per_class[1].name.as_str()),
        ("cat", "1")
    );
    let json = serde_json::to_value(&m).expect("serialises");
    assert_eq!(json["confusion"], serde_json::json!([[0, 1], [0, 1]]));
    assert_eq!(json["per_class"][1]["support"], 1);
}

#[test]
fn nothing_to_score_averages_to_zero() {
    let m = Metrics::new(2, &[], &[], &[]);
    assert_eq!(m.macro_avg.precision, 0.0);
    assert_eq!(m.weighted_avg.support, 0);
}
