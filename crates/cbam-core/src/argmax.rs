//! The predicted class: which output is largest, with one rule for ties that the device,
//! the host tools and the tests all share. Int8 logits tie often (two classes whose float
//! logits differ by less than one output step round to the same level), so two places
//! that broke ties differently would disagree on images where nothing differs but the rule.

/// The index of the largest value; of several equal maxima, the first. A value that is
/// unordered even against itself (a float NaN) never wins: it is skipped, so a NaN logit
/// cannot hide the class a comparable logit picks. `None` when `values` is empty or holds
/// only NaNs.
pub fn argmax<T: PartialOrd>(values: &[T]) -> Option<usize> {
    let mut best: Option<(usize, &T)> = None;
    for (i, v) in values.iter().enumerate() {
        let ordered = v.partial_cmp(v).is_some();
        if ordered && best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// True when two or more values equal the maximum, i.e. when [`argmax`] had to break a
/// tie (NaNs are skipped as there).
pub fn top1_tied<T: PartialOrd>(values: &[T]) -> bool {
    let Some(top) = argmax(values).and_then(|i| values.get(i)) else {
        return false;
    };
    values.iter().filter(|v| *v == top).nth(1).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_equal_maxima_wins() {
        assert_eq!(argmax(&[1i8, 5, -3, 5]), Some(1));
        assert_eq!(argmax(&[-128i8, -128, -128]), Some(0));
        assert_eq!(argmax(&[0.1f32, 0.9, 0.9]), Some(1));
        assert_eq!(argmax::<i8>(&[]), None);
    }

    #[test]
    fn nan_never_wins() {
        assert_eq!(argmax(&[f32::NAN, -1.0, -2.0]), Some(1));
        assert_eq!(argmax(&[-1.0, f32::NAN, 3.0, f32::NAN]), Some(2));
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), None);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NAN]), Some(0));
    }

    #[test]
    fn a_tie_is_two_values_at_the_maximum() {
        assert!(top1_tied(&[3i8, 7, 7, -1]));
        assert!(!top1_tied(&[7i8, 3, 3]));
        assert!(!top1_tied(&[7i8]));
        assert!(!top1_tied::<i8>(&[]));
        assert!(top1_tied(&[f32::NAN, 2.0, 2.0]));
        assert!(!top1_tied(&[f32::NAN, f32::NAN, 2.0]));
    }
}
