//! `--mean` / `--std`: the input normalisation of a model whose ONNX file does not carry
//! `cbam.mean` / `cbam.std` (what timm, torchvision and hand-written models export).

use anyhow::{ensure, Result};
use cbam_compiler::data::InputSpec;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct NormArgs {
    /// Input normalisation mean, model input = (pixel/255 - mean) / std: one value or one
    /// per channel (ImageNet: --mean 0.485,0.456,0.406). Replaces the model's cbam.mean
    #[arg(
        long,
        value_name = "M[,M..]",
        value_delimiter = ',',
        allow_negative_numbers = true
    )]
    pub mean: Option<Vec<f32>>,
    /// Input normalisation std, one value or one per channel (ImageNet: --std
    /// 0.229,0.224,0.225). Replaces the model's cbam.std
    #[arg(long, value_name = "S[,S..]", value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
}

impl NormArgs {
    /// `(mean, std)` when either flag is given (the other defaults to 0 or 1).
    pub fn given(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        if self.mean.is_none() && self.std.is_none() {
            return None;
        }
        Some((
            self.mean.clone().unwrap_or_else(|| vec![0.0]),
            self.std.clone().unwrap_or_else(|| vec![1.0]),
        ))
    }

    /// `spec` with the flags' normalisation, checked against its channel count.
    pub fn apply(&self, spec: InputSpec) -> Result<InputSpec> {
        let Some((mean, std)) = self.given() else {
            return Ok(spec);
        };
        let c = spec.shape[0];
        for (flag, v) in [("--mean", &mean), ("--std", &std)] {
            ensure!(
                v.len() == 1 || v.len() == c,
                "{flag} has {} values but the model takes {c} input channels; give one value \
                 or {c}",
                v.len()
            );
            ensure!(
                v.iter().all(|x| x.is_finite()),
                "{flag} {v:?} holds a value that is not a number"
            );
        }
        Ok(InputSpec::new(spec.shape, &mean, &std)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> InputSpec {
        InputSpec::new([3, 2, 2], &[], &[]).unwrap()
    }

    #[test]
    fn flags_replace_the_model_normalisation() {
        let none = NormArgs::default();
        assert_eq!(none.apply(spec()).unwrap(), spec());
        let imagenet = NormArgs {
            mean: Some(vec![0.485, 0.456, 0.406]),
            std: Some(vec![0.229, 0.224, 0.225]),
        };
        let s = imagenet.apply(spec()).unwrap();
        assert_eq!(s.mean, [0.485, 0.456, 0.406]);
        assert_eq!(s.std, [0.229, 0.224, 0.225]);
        let mean_only = NormArgs {
            mean: Some(vec![0.5]),
            std: None,
        };
        assert_eq!(mean_only.apply(spec()).unwrap().std, [1.0; 3]);
    }

    #[test]
    fn wrong_counts_and_bad_values_are_refused() {
        let two = NormArgs {
            mean: Some(vec![0.1, 0.2]),
            std: None,
        };
        let err = two.apply(spec()).unwrap_err().to_string();
        assert!(err.contains("3 input channels"), "{err}");
        let zero_std = NormArgs {
            mean: None,
            std: Some(vec![0.0]),
        };
        assert!(zero_std.apply(spec()).is_err());
        let nan = NormArgs {
            mean: Some(vec![f32::NAN]),
            std: None,
        };
        assert!(nan.apply(spec()).is_err());
    }
}
